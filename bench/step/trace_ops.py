#!/opt/mgca-venv/bin/python
"""Self CPU time per op of one profiled step (chrome traces of
`bench_step --profile` and `mgca_step.py --profile`), side by side.

    /opt/mgca-venv/bin/python bench/step/trace_ops.py OURS.json REFERENCE.json [--top 30]

Self time = an event's duration minus that of the events nested in it on the
same thread. Autograd's backward nodes (`…Backward0`) and the ops they call
are separate events, so the backward's kernels appear under their aten names.
"""
import argparse
import collections
import json


def self_times(path):
    with open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    by_thread = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            by_thread[e.get("tid")].append((float(e["ts"]), float(e["dur"]), e["name"]))
    out = collections.Counter()
    count = collections.Counter()
    for evs in by_thread.values():
        evs.sort(key=lambda x: (x[0], -x[1]))
        stack = []  # [end, name, child time]
        for ts, dur, name in evs:
            while stack and ts >= stack[-1][0]:
                end, n, child, d = stack.pop()
                out[n] += d - child
            if stack:
                stack[-1][2] += dur
            stack.append([ts + dur, name, 0.0, dur])
            count[name] += 1
        while stack:
            end, n, child, d = stack.pop()
            out[n] += d - child
    return out, count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("reference")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    ours, n_ours = self_times(a.ours)
    ref, n_ref = self_times(a.reference)
    t_ours, t_ref = sum(ours.values()), sum(ref.values())
    print(f"total self time: ours {t_ours / 1e3:.1f} ms, reference {t_ref / 1e3:.1f} ms")
    print(f"{'op':40s} {'ours ms':>9s} {'n':>5s} {'ref ms':>9s} {'n':>5s}")
    names = sorted(set(ours) | set(ref), key=lambda n: -max(ours.get(n, 0), ref.get(n, 0)))
    for n in names[:a.top]:
        print(f"{n[:40]:40s} {ours.get(n, 0) / 1e3:9.1f} {n_ours.get(n, 0):5d} {ref.get(n, 0) / 1e3:9.1f} "
              f"{n_ref.get(n, 0):5d}")


if __name__ == "__main__":
    main()
