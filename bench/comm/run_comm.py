#!/opt/mgca-venv/bin/python
"""Runs bench_comm under mpirun (np=2, and np=4 oversubscribed on machines
with fewer than 4 cores) and renders the tables of docs/performance.md's
Communication section. scripts/bench calls run() and markdown(); by hand:

    bench/comm/run_comm.py [--build build/release] [--json out.json] [--quick]
"""
import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPIRUN = ["mpirun", "--allow-run-as-root", "--bind-to", "none"]


def run(build, results, quick=False, ranks=(2, 4)):
    """Runs every rank count; returns {"np2": bench_comm JSON, ...}."""
    program = os.path.join(build, "bench", "comm", "bench_comm")
    out = {}
    for n in ranks:
        path = os.path.join(results, f"comm-np{n}.json")
        cmd = MPIRUN + (["--oversubscribe"] if n > (os.cpu_count() or 1) else []) + ["-np", str(n), program,
                                                                                      "--json", path]
        if quick:
            cmd += ["--max-bytes", str(1 << 20), "--iters", "5", "--warmup", "1"]
        print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
        r = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise SystemExit(f"run_comm: bench_comm -np {n} failed ({r.returncode})")
        out[f"np{n}"] = json.load(open(path))
    return out


def ratios(res, min_bytes=1 << 20):
    """(collective, bytes, ours/raw busbw) for sizes >= min_bytes, from one bench_comm result."""
    rows = {}
    for r in res["results"]:
        rows.setdefault((r["collective"], r["bytes"]), {})[r["variant"]] = r
    out = []
    for (c, b), v in sorted(rows.items()):
        if b >= min_bytes and "raw" in v and "ours" in v and v["raw"]["busbw_GBps"] > 0:
            out.append((c, b, v["ours"]["busbw_GBps"] / v["raw"]["busbw_GBps"]))
    return out


def _table(res):
    rows = {}
    for r in res["results"]:
        rows.setdefault(r["collective"], {}).setdefault(r["bytes"], {})[r["variant"]] = r
    lines = []
    for c in ("all_reduce", "all_gather", "reduce_scatter"):
        if c not in rows:
            continue
        extra, extra_name = ("async", "ours async (GradSync path)") if c == "all_reduce" else ("alloc", "ours allocating")
        lines += ["", f"{c} ({res['dtype']}, {res['world_size']} ranks"
                      f"{', oversubscribed' if res['oversubscribed'] else ''}): busbw GB/s, ratio to raw in brackets", "",
                  f"| bytes | raw time µs | raw busbw | ours | ours, no check | {extra_name} |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for b, v in sorted(rows[c].items()):
            raw = v.get("raw")

            def cell(k):
                if k not in v:
                    return "–"
                if not raw or raw["busbw_GBps"] <= 0:
                    return f"{v[k]['busbw_GBps']:.3f}"
                return f"{v[k]['busbw_GBps']:.3f} ({v[k]['busbw_GBps'] / raw['busbw_GBps']:.2f})"

            lines.append(f"| {b} | {raw['time_us'] if raw else 0:.1f} | {raw['busbw_GBps'] if raw else 0:.3f} "
                         f"| {cell('ours')} | {cell('nocheck')} | {cell(extra)} |")
    return lines


def markdown(out):
    keys = sorted(out, key=lambda k: int(k[2:]))
    lines = ["Fixed cost per call, no payload (median of 400, µs):", "",
             "| | " + " | ".join(f"np={out[k]['world_size']}{' (oversubscribed)' if out[k]['oversubscribed'] else ''}"
                                  for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    for name in out[keys[0]]["per_call_us"]:
        lines.append(f"| {name} | " + " | ".join(f"{out[k]['per_call_us'].get(name, 0):.2f}" for k in keys) + " |")
    for k in keys:
        lines += _table(out[k])
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build", "release"))
    ap.add_argument("--results", default="/tmp")
    ap.add_argument("--json", help="write the combined result here")
    ap.add_argument("--from-json", nargs="+", help="render existing bench_comm JSON files instead of running")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.from_json:
        out = {}
        for path in args.from_json:
            res = json.load(open(path))
            out[f"np{res['world_size']}"] = res
    else:
        out = run(args.build, args.results, args.quick)
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1)
    print(markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
