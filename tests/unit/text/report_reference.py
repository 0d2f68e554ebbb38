#!/opt/mgca-venv/bin/python
"""Reference for mgca::text::clean_report: the official MGCA cleaning
(MultimodalPretrainingDataset.create_path_2_sent_mapping) run in Python on
every Open-I report and on edge cases.

  report_reference.py REPORTS_TGZ OUT.jsonl

Writes one JSON object per case: {"id", "impression", "findings",
"sentences", "cnt", "kept"}. nltk is not installed here;
RegexpTokenizer(r"\\w+").tokenize(s) is re.findall(r"\\w+", s).
"""
import json
import re
import sys
import tarfile
import xml.etree.ElementTree as ET

EDGE_CASES = [
    ("", ""),
    ("   ", "\n"),
    ("1. No pneumothorax. 2. Heart size normal. 3. Clear lungs", ""),
    ("1.2.3. a b c", "12 ribs. 3.5 cm nodule at 2.5cm"),
    ("Normal. Clear lungs.", ""),
    ("XXXX", "XXXX XXXX"),
    ("XXXX XXXX XXXX.", "The XXXX are intact."),
    ("Caf\u00e9 r\u00e9sum\u00e9 na\u00efve \u03a3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2 \u039f\u0394\u039f\u03a3 here.", ""),
    ("\u0130LEUS noted here and there.", "stra\u00dfe \uff4c\uff55\uff4e\uff47 \u00b2 \u0663 words"),
    ("no\ufffd\ufffdeffusion seen today", "a\ufffdb c\ufffd\ufffd\ufffdd e"),
    ("Heart normal.\nLungs clear.\n\n3. Bones intact", "left_lower lobe; patient's heart"),
    ("no   acute\tdisease\r\nfound", "T12 vertebra, 10x12 mm. 50% (2+) effusion"),
    ("\u4e2d\u6587 \u8bcd lungs clear", "emoji \U0001F600 lungs \U0001D400 clear"),
    ("one", "two"),
    ("one two", ""),
    ("...", "1. 2. 3."),
]


def clean(impression, findings):
    captions = impression + " " + findings
    captions = captions.replace("\n", " ")
    splitter = re.compile(r"[0-9]+\.")
    captions = splitter.split(captions)
    captions = [point.split(".") for point in captions]
    captions = [sent for point in captions for sent in point]
    study_sent, cnt = [], 0
    for cap in captions:
        if len(cap) == 0:
            continue
        cap = cap.replace("\ufffd\ufffd", " ")
        tokens = re.findall(r"\w+", cap.lower())
        if len(tokens) <= 1:
            continue
        included = [t.encode("ascii", "ignore").decode("ascii") for t in tokens]
        included = [t for t in included if len(t) > 0]
        if len(included) > 0:
            study_sent.append(" ".join(included))
        cnt += len(included)
    return study_sent, cnt


def section(root, label):
    for node in root.iter("AbstractText"):
        if node.get("Label") == label:
            return node.text or ""
    return ""


def main(tgz, out_path):
    cases = [(f"edge-{i}", imp, fin) for i, (imp, fin) in enumerate(EDGE_CASES)]
    with tarfile.open(tgz) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".xml")]
        members.sort(key=lambda m: int(re.search(r"(\d+)\.xml$", m.name).group(1)))
        for m in members:
            root = ET.fromstring(tar.extractfile(m).read())
            cases.append((m.name, section(root, "IMPRESSION"), section(root, "FINDINGS")))
    with open(out_path, "w", encoding="utf-8") as out:
        for case_id, imp, fin in cases:
            sents, cnt = clean(imp, fin)
            out.write(json.dumps({"id": case_id, "impression": imp, "findings": fin,
                                  "sentences": sents, "cnt": cnt, "kept": cnt >= 3}) + "\n")
    print(f"wrote {len(cases)} cases ({len(cases) - len(EDGE_CASES)} reports)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
