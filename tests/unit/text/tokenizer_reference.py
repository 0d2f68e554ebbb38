#!/opt/mgca-venv/bin/python
"""Hugging Face's BERT tokenizers on every Open-I report, for test_tokenizer_hf.cpp.

  tokenizer_reference.py REPORTS_TGZ VOCAB cased|uncased MAX_LENGTH OUT.jsonl

Two texts per report: "raw" (every <AbstractText> section, in document order,
joined by a newline: punctuation, numbers, XXXX, odd whitespace) and
"cleaned" (MGCA's cleaned sentences joined by spaces, what the official
dataset feeds its tokenizer; report_reference.clean). Each is tokenized by
transformers' BertTokenizerLegacy (the pure-Python tokenizer that was
`BertTokenizer` before transformers 5) and by `BertTokenizer` (transformers 5:
backed by the Rust `tokenizers` WordPiece). One JSON object per text:
{"id", "kind", "text", "slow": {"pieces", "input_ids", "attention_mask"},
"fast": {...}}, where "pieces" are the ids without [CLS]/[SEP] or truncation
and input_ids/attention_mask are MGCA's call (truncation=True,
padding="max_length", max_length=MAX_LENGTH).
"""
import json
import re
import sys
import tarfile
import xml.etree.ElementTree as ET

from transformers import BertTokenizer, BertTokenizerLegacy

from report_reference import clean, section


def report_texts(tgz):
    with tarfile.open(tgz) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".xml")]
        members.sort(key=lambda m: int(re.search(r"(\d+)\.xml$", m.name).group(1)))
        for m in members:
            root = ET.fromstring(tar.extractfile(m).read())
            raw = "\n".join(node.text or "" for node in root.iter("AbstractText"))
            sentences, _ = clean(section(root, "IMPRESSION"), section(root, "FINDINGS"))
            yield m.name, "raw", raw
            yield m.name, "cleaned", " ".join(sentences)


def encode(tokenizer, text, max_length):
    enc = tokenizer(text, truncation=True, padding="max_length", max_length=max_length)
    return {"pieces": tokenizer(text, add_special_tokens=False)["input_ids"],
            "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def main(tgz, vocab, casing, max_length, out_path):
    lower = {"cased": False, "uncased": True}[casing]
    slow = BertTokenizerLegacy(vocab, do_lower_case=lower)
    fast = BertTokenizer(vocab, do_lower_case=lower)
    count = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for case_id, kind, text in report_texts(tgz):
            out.write(json.dumps({"id": case_id, "kind": kind, "text": text,
                                  "slow": encode(slow, text, max_length),
                                  "fast": encode(fast, text, max_length)}) + "\n")
            count += 1
    print(f"wrote {count} texts")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
