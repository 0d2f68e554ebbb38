#!/opt/mgca-venv/bin/python
"""Weak scaling of our train step on this machine: W = 1, 2 (4 oversubscribed).

    /opt/mgca-venv/bin/python bench/scaling/run_scaling.py [--build build/release] [--cases tiny,real]
        [--worlds 1,2,4] [--threads 1] [--reps 3] [--json OUT] [--quick]

Each run is `mpirun -np W --bind-to none bench_step` with a fixed batch and
thread count per rank (weak scaling: the global batch grows with W). The
figures of a run are rank 0's per-step medians (every step ends in
collectives, so all ranks see the same step time):

  throughput(W)  = W · b / step time                       (samples/s, all ranks)
  efficiency(W)  = throughput(W) / (W · throughput(1))
  exposed share  = time inside communication calls / step time
                   (bench_step's timed communicator: SyncBatchNorm, ITA,
                   Sinkhorn, the gradient sync's wait, the trainer's reductions)

Runs with more ranks than cores are marked oversubscribed: their efficiency
measures time-sharing of the cores, not communication. The medians over
--reps repetitions (W = 1, 2, … in rotating order) are reported.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY = "/opt/mgca-venv/bin/python"

# name: (job, overrides, batch per rank, warmup, steps, worlds allowed, most repetitions)
CASES = {
    "tiny": ("jobs/cpu-demo.toml", [], 32, 2, 8, (1, 2, 4), None),
    # ~4.5 GB per rank: 4 ranks would not fit beside other work on a 24 GB machine. At one thread per
    # rank a step takes ~10 s: one repetition of 3 timed steps keeps scripts/bench within its budget.
    "real": ("jobs/mgca-vit-b16.toml", ['model.image_weights=""', 'model.text_weights=""'], 8, 1, 3, (1, 2), 1),
}


def mpirun():
    exe = shutil.which("mpirun") or "mpirun"
    return [exe, "--allow-run-as-root", "--bind-to", "none", "--oversubscribe"]


def run_one(args, name, world, inputs, warmup, steps):
    job, overrides, batch = CASES[name][:3]
    with tempfile.TemporaryDirectory(prefix="mgca-bench-scaling-") as tmp:
        out = os.path.join(tmp, "r.json")
        cmd = mpirun() + ["-np", str(world), os.path.join(args.build, "bench", "step", "bench_step"),
                          "--job", job, "--batch", str(batch), "--threads", str(args.threads),
                          "--warmup", str(warmup), "--steps", str(steps), "--inputs", inputs, "--json", out]
        for o in overrides:
            cmd += ["--set", o]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        r = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-4000:]}")
        with open(out) as f:
            return json.load(f)


def run_case(args, name):
    job, overrides, batch, warmup, steps, allowed, most_reps = CASES[name]
    reps = min(args.reps, most_reps) if most_reps else args.reps
    if args.quick:
        warmup, steps = 1, 2
    worlds = [w for w in args.worlds if w in allowed]
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="mgca-bench-scaling-in-") as tmp:
        # enough distinct batches for the largest world: pool = 4 global batches
        inputs = os.path.join(tmp, "inputs.safetensors")
        sets = sum((["--set", o] for o in overrides), [])
        subprocess.run([PY, os.path.join(REPO, "bench/reference/mgca_step.py"), "--job", job, "--batch",
                        str(batch * max(worlds)), "--pool", "4", "--write-inputs", inputs] + sets, cwd=REPO, check=True)
        runs = {w: [] for w in worlds}
        for rep in range(reps):
            order = worlds[rep % len(worlds):] + worlds[:rep % len(worlds)]
            for w in order:
                r = run_one(args, name, w, inputs, warmup, steps)
                runs[w].append(r)
                print(f"[scaling {name}] rep {rep + 1}/{reps} W={w}: {w * batch / r['median_s']['total']:.3f} "
                      f"samples/s, comm {1e3 * r['median_s']['comm_calls']:.1f} ms", file=sys.stderr, flush=True)
    rows = []
    for w in worlds:
        total = statistics.median(r["median_s"]["total"] for r in runs[w])
        comm = statistics.median(r["median_s"]["comm_calls"] for r in runs[w])
        grad = statistics.median(r["median_s"]["comm"] for r in runs[w])
        rows.append(dict(world=w, oversubscribed=w * args.threads > cores, step_s=total, comm_s=comm,
                         grad_sync_s=grad, throughput=w * batch / total, exposed_share=comm / total,
                         peak_rss_mb=max(r["peak_rss_mb"] for r in runs[w])))
    base = next((r for r in rows if r["world"] == 1), None)
    for r in rows:
        r["efficiency"] = r["throughput"] / (r["world"] * base["throughput"]) if base else None
    return dict(name=name, job=job, batch_per_rank=batch, threads_per_rank=args.threads, reps=reps,
                warmup=warmup, steps=steps, rows=rows)


def markdown(res):
    lines = ["Weak scaling, `mpirun --bind-to none`, fixed batch and threads per rank; per case: "
             + "; ".join(f"{c['name']}: {c['reps']} repetition(s) of {c['warmup']} warm-up + {c['steps']} timed steps"
                         for c in res["cases"].values())
             + ". Oversubscribed rows have more ranks × threads than cores: they time-share the cores.", "",
             "| case | W | samples/s (all ranks) | step ms | exposed comm ms (gradient sync) | exposed share "
             "| efficiency | peak RSS per rank MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for case in res["cases"].values():
        for r in case["rows"]:
            mark = " (oversubscribed)" if r["oversubscribed"] else ""
            eff = f"{100 * r['efficiency']:.1f} %" if r["efficiency"] is not None else "–"
            lines.append(f"| {case['name']} (b={case['batch_per_rank']}/rank, {case['threads_per_rank']} thread) "
                         f"| {r['world']}{mark} | {r['throughput']:.2f} | {1e3 * r['step_s']:.1f} "
                         f"| {1e3 * r['comm_s']:.1f} ({1e3 * r['grad_sync_s']:.1f}) | {100 * r['exposed_share']:.1f} % "
                         f"| {eff} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build", "release"))
    ap.add_argument("--cases", default="tiny,real")
    ap.add_argument("--worlds", default="1,2,4")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per rank (fixed for every W)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 repetition, 2 steps (smoke run)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    args.worlds = [int(w) for w in args.worlds.split(",")]
    if args.quick:
        args.reps = 1
    res = dict(cases={})
    for name in [c for c in args.cases.split(",") if c]:
        if name not in CASES:
            ap.error(f"unknown case {name!r}: {sorted(CASES)}")
        res["cases"][name] = run_case(args, name)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
