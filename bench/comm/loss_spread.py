#!/opt/mgca-venv/bin/python
"""Is a run's loss curve within the seed-to-seed spread of reference runs?

    loss_spread.py --reference runs/gd-native-7 runs/gd-native-8 --candidate runs/gd-bf16-7 runs/gd-bf16-8
        [--key loss] [--window 10] [--markdown]

Each run folder holds the trainer's metrics.jsonl. Curves are smoothed by a
running mean over `window` steps (single steps are noisy at batch 2 × 16).
The spread is the largest absolute difference between any two reference
curves at each step; a candidate stays within it when its distance to the
nearest reference curve is at most that spread. Reported: the share of steps
within the spread, the mean and the largest distance against the mean
spread, and the final smoothed losses.
"""
import argparse
import json
import os
import sys

import numpy as np


def curve(run, key):
    steps, values = [], []
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if row.get(key) is not None:
                steps.append(row["step"])
                values.append(row[key])
    return np.array(steps), np.array(values, dtype=float)


def smooth(values, window):
    if window <= 1:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", nargs="+", required=True, help="run folders of the baseline (different seeds)")
    ap.add_argument("--candidate", nargs="+", required=True, help="run folders to check")
    ap.add_argument("--key", default="loss")
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    if len(args.reference) < 2:
        ap.error("the spread needs at least two reference runs")

    def load(runs):
        out = {}
        for run in runs:
            steps, values = curve(run, args.key)
            out[run] = (steps, smooth(values, args.window))
        return out

    refs, cands = load(args.reference), load(args.candidate)
    length = min(len(v[0]) for v in list(refs.values()) + list(cands.values()))
    ref = np.stack([v[1][:length] for v in refs.values()])
    spread = ref.max(0) - ref.min(0)
    rows = []
    for run, (_, values) in cands.items():
        dist = np.abs(ref - values[:length]).min(0)
        rows.append(dict(run=run, within=float(np.mean(dist <= spread)), mean_distance=float(dist.mean()),
                         max_distance=float(dist.max()), final=float(values[length - 1])))
    result = dict(key=args.key, window=args.window, steps=int(length), mean_spread=float(spread.mean()),
                  max_spread=float(spread.max()),
                  reference_final={run: float(v[1][length - 1]) for run, v in refs.items()}, candidates=rows)
    if args.markdown:
        print(f"`{args.key}`, running mean over {args.window} steps, {length} steps; seed-to-seed spread of "
              f"the references: mean {result['mean_spread']:.4f}, max {result['max_spread']:.4f}; final "
              + ", ".join(f"{os.path.basename(r)} {v:.4f}" for r, v in result["reference_final"].items()) + ".\n")
        print("| run | steps within the spread | mean distance to nearest reference | max distance | final |")
        print("|---|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {os.path.basename(r['run'])} | {100 * r['within']:.0f} % | {r['mean_distance']:.4f} | "
                  f"{r['max_distance']:.4f} | {r['final']:.4f} |")
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
