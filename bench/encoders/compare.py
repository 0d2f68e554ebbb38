#!/usr/bin/python3
"""Side-by-side table of bench_encoders (ours) and bench/reference/encoders.py.

    compare.py --ours ours*.json --reference ref*.json [--markdown]

Rows are matched by model name; the ratio is reference time / our time
(> 1: we are faster). Wall medians, and the process-CPU medians that are
steadier on a shared machine.
"""
import argparse
import json


def load(paths):
    rows, meta = {}, {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        meta = {k: data[k] for k in ("implementation", "torch", "threads", "reps")}
        for row in data["results"]:
            rows[row["name"]] = row
    return rows, meta


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", nargs="+", required=True)
    p.add_argument("--reference", nargs="+", required=True)
    args = p.parse_args()
    ours, om = load(args.ours)
    ref, rm = load(args.reference)
    print(f"ours: torch {om['torch']}, {om['threads']} threads; reference: torch {rm['torch']}, "
          f"{rm['threads']} threads; ms per sample (median of {om['reps']}/{rm['reps']})\n")
    print("| model | batch | forward ours | forward PyTorch | ratio | fwd+bwd ours | fwd+bwd PyTorch | ratio "
          "| ratio (CPU time) fwd / fwd+bwd |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, o in ours.items():
        if name not in ref or "forward_ms_per_sample" not in o:
            continue
        r = ref[name]
        cells = [name, str(o["batch"])]
        for key in ("forward", "train"):
            a, b = o[f"{key}_ms_per_sample"], r[f"{key}_ms_per_sample"]
            cells += [f"{a:.1f}", f"{b:.1f}", f"{b / a:.2f}"]
        cpu = [r[f"{k}_cpu_ms_per_sample"] / o[f"{k}_cpu_ms_per_sample"] for k in ("forward", "train")]
        cells.append(f"{cpu[0]:.2f} / {cpu[1]:.2f}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
