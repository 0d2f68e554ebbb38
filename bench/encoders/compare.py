#!/opt/mgca-venv/bin/python
"""Side-by-side table of bench_encoders (ours) and bench/reference/encoders.py.

    compare.py --ours ours*.json --reference ref*.json

Rows are matched by model name; ratio = reference time / our time (> 1: we
are faster). Wall-time medians, and the ratio of process-CPU medians, which
is steadier on a shared machine. scripts/bench imports markdown().
"""
import argparse
import json


def load(paths):
    """Merges the result files of one implementation: (rows by name, run settings)."""
    rows, meta = {}, {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        meta = {k: data[k] for k in ("implementation", "torch", "threads", "reps")}
        for row in data["results"]:
            rows[row["name"]] = row
    return rows, meta


def markdown(ours, reference):
    (o_rows, om), (r_rows, rm) = ours, reference
    lines = [f"libtorch {om['torch']} (ours) and torch {rm['torch']} (PyTorch), {om['threads']} threads, "
             f"ms per sample, median of {om['reps']} repetitions.", "",
             "| model | batch | forward ours | forward PyTorch | ratio | fwd+bwd ours | fwd+bwd PyTorch | ratio "
             "| CPU-time ratio fwd / fwd+bwd |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, o in o_rows.items():
        r = r_rows.get(name)
        if r is None or "forward_ms_per_sample" not in o:
            continue
        cells = [name, str(o["batch"])]
        for key in ("forward", "train"):
            a, b = o[f"{key}_ms_per_sample"], r[f"{key}_ms_per_sample"]
            cells += [f"{a:.1f}", f"{b:.1f}", f"{b / a:.2f}×"]
        cpu = [r[f"{k}_cpu_ms_per_sample"] / o[f"{k}_cpu_ms_per_sample"] for k in ("forward", "train")]
        cells.append(f"{cpu[0]:.2f}× / {cpu[1]:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    micro = [row for row in o_rows.values() if "forward_ms_per_sample" not in row]
    if micro:
        lines += ["", "Micro-benchmarks (ours; CPU ms per sample, median):", ""]
        for row in micro:
            parts = [f"{k[:-len('_cpu_ms_per_sample')]} {v:.2f}" for k, v in row.items()
                     if k.endswith("_cpu_ms_per_sample")]
            lines.append(f"- `{row['name']}` (batch {row['batch']}): " + ", ".join(parts))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", nargs="+", required=True)
    p.add_argument("--reference", nargs="+", required=True)
    args = p.parse_args()
    print(markdown(load(args.ours), load(args.reference)))


if __name__ == "__main__":
    main()
