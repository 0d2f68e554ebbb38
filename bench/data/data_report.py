#!/opt/mgca-venv/bin/python
"""Markdown table of bench_data's JSON beside bench/reference/data_torchvision.py's
(used by scripts/bench --only data; also runnable by hand):

    /opt/mgca-venv/bin/python bench/data/data_report.py data.json data_torchvision.json
"""
import json
import sys


def _ratio(a, b):
    return f"{a / b:.1f}×" if a and b else "—"


def rows(ours, tv):
    """(figure, ours, torchvision, ratio) rows."""
    out = []
    aug, tva = ours.get("augment", {}), tv.get("read_augment", {}) if tv else {}
    loader, tvl = ours.get("loader", {}), tv.get("loader", {}) if tv else {}
    for name, label in (("mgca", "MGCA"), ("convirt", "ConVIRT")):
        a = aug.get(name, {}).get("read_augment_images_per_s")
        t = tva.get(name, {}).get("images_per_s")
        out.append((f"{label} read + augmentation, 1 thread (256 → 224)", a, t))
        for key, entry in sorted(loader.get(name, {}).items()):
            threads = key.split("_")[1]
            t = tvl.get(name, {}).get("threads_1", {}).get("images_per_s") if threads == "1" else None
            out.append((f"{label} loader, {threads} worker thread(s), per thread (with tokenisation)",
                        entry["images_per_s_per_thread"], t))
    synth = ours.get("synth", {})
    for size in (64, 128, 256):
        out.append((f"synth {size} px, 1 thread", synth.get(f"{size}px_images_per_s"), None))
    out.append(("synth + shard writing, 128 px, 1 thread", synth.get("128px_write_images_per_s"), None))
    out.append(("tokenisation, reports/s", ours.get("tokenize_per_s"), None))
    for key, entry in sorted(ours.get("import", {}).items()):
        if key.startswith("threads_"):
            out.append((f"import (decode, resize, write), {key.split('_')[1]} thread(s), per thread",
                        entry["images_per_s_per_thread"], None))
    return out


def markdown(ours, tv):
    lines = ["| figure (images/s unless noted) | ours | torchvision | ratio |", "|---|---:|---:|---:|"]
    for label, a, t in rows(ours, tv):
        lines.append(f"| {label} | {a:,.0f} | {f'{t:,.1f}' if t else '—'} | {_ratio(a, t)} |" if a else
                     f"| {label} | — | — | — |")
    return "\n".join(lines)


def targets(ours):
    """(target, goal, value, ok) rows for the targets table."""
    out = []
    mgca = ours.get("loader", {}).get("mgca", {}).get("threads_1", {}).get("images_per_s_per_thread")
    if mgca:
        out.append(("MGCA loader images/s per worker thread at 224 px", "≥ 1,000", f"{mgca:,.0f}", mgca >= 1000))
    synth = ours.get("synth", {}).get("256px_images_per_s")
    if synth:
        out.append(("synthetic images/s per core at 256 px", "≥ 1,000", f"{synth:,.0f}", synth >= 1000))
    return out


if __name__ == "__main__":
    ours = json.load(open(sys.argv[1]))
    tv = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else None
    print(markdown(ours, tv))
