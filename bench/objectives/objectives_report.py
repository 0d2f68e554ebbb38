#!/opt/mgca-venv/bin/python
"""Markdown table of a bench_objectives JSON file (used by scripts/bench).

  objectives_report.py objectives.json
"""
import json
import sys


def markdown(res):
    pts = res["points"]
    lines = [
        f"{res['threads']} thread(s), median of {res['reps']} repetitions; W > 1 emulated in one process "
        "(per-rank shapes, allocations and arithmetic; no communication time).",
        "",
        "| objective | W | b | N | d | fwd ms | fwd+bwd ms | CPU ms | peak step MiB | peak / (b·N·4 B) | "
        "PyTorch reference fwd+bwd ms (CPU ms) | ours vs reference (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in pts:
        ref = (f"{p['reference_fwd_bwd_ms']:.1f} ({p['reference_fwd_bwd_cpu_ms']:.1f})"
               if "reference_fwd_bwd_ms" in p else "")
        ratio = (f"{p['speedup_vs_reference']:.2f}× ({p['cpu_speedup_vs_reference']:.2f}×)"
                 if "speedup_vs_reference" in p else "")
        local = p["objective"] in ("cta", "mgca", "cpa")
        lines.append(
            f"| {p['objective']} | {p['W']} | {p['b']} | {p['N']:,} | {p['d']} | {p['fwd_ms']:.1f} | "
            f"{p['fwd_bwd_ms']:.1f} | {p['fwd_bwd_cpu_ms']:.1f} | {p['peak_step_bytes'] / 2**20:.1f} | "
            f"{'–' if local else format(p['peak_over_logits'], '.2f')} | {ref} | {ratio} |")
    return "\n".join(lines)


def reference_ratio(res, b=64):
    """CPU-time ratio reference / ours of the whole MGCA objective at W = 1, or None."""
    for p in res["points"]:
        if p["objective"] == "mgca" and p["W"] == 1 and p["b"] == b and "cpu_speedup_vs_reference" in p:
            return p["cpu_speedup_vs_reference"]
    return None


if __name__ == "__main__":
    print(markdown(json.load(open(sys.argv[1]))))
