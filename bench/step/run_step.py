#!/opt/mgca-venv/bin/python
"""Our MGCA train step beside the PyTorch reference, alternating, medians.

    /opt/mgca-venv/bin/python bench/step/run_step.py [--cases tiny,real] [--reps 3] [--threads 2] \
        [--build build/release] [--json OUT] [--markdown OUT.md]

For each case both sides train the same model (shapes, batch, dropout and
optimizer from the job file) on the same synthetic inputs (one safetensors
file written by the reference script, read by both), with the same thread
count, in separate processes so that each one's peak RSS is its own. A
repetition runs every side once, in an order that rotates from one
repetition to the next; each run does `warmup` untimed and `steps` timed
steps and reports per-step medians; the figure of a side is the median over
repetitions. Sides:

  ours                  build/…/bench_step (the trainer's step, the code path of `mgca train`)
  reference             bench/reference/mgca_step.py, the official code's structure
  reference-vectorized  the same with the subword→word loop replaced by one index_add
  reference-compiled    reference-vectorized under torch.compile (inductor); its host-side Python
                        (word slots from the ids, per-sample quantile loops) stays eager

MFU = analytic FLOPs per step (bench/reference/flops.py) / median step time
/ the peak fp32 GEMM rate of at::mm on this machine at the same thread
count (bench_gemm_peak, measured in the same run).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench", "reference"))

import flops  # noqa: E402
import jobfile  # noqa: E402
from mgca_official import model_shapes  # noqa: E402

PYTHON = "/opt/mgca-venv/bin/python"
REFERENCE = os.path.join(REPO, "bench", "reference", "mgca_step.py")

# name: (job, overrides, batch, warmup, steps, sides). The real case (~1.1 TFLOP per step, seconds per step
# on 2 cores) runs ours and the official-structure reference only, 2 timed steps per run, to keep
# scripts/bench within its time budget; the vectorized reference is measured at the tiny shapes.
# The -bf16 cases run both sides under bf16 autocast (runtime.autocast = bf16; the reference reads it
# from the job). reference-compiled is the vectorized reference under torch.compile (inductor; its
# compilation happens in the warm-up steps and is not timed).
REAL = ['model.image_weights=""', 'model.text_weights=""']
ALL_SIDES = ("ours", "reference", "reference-vectorized", "reference-compiled")
CASES = {
    "tiny": ("jobs/cpu-demo.toml", [], 32, 2, 8, ALL_SIDES),
    "real": ("jobs/mgca-vit-b16.toml", REAL, 8, 1, 2, ("ours", "reference", "reference-compiled")),
    "tiny-bf16": ("jobs/cpu-demo.toml", ['runtime.autocast="bf16"'], 32, 2, 8, ALL_SIDES),
    "real-bf16": ("jobs/mgca-vit-b16.toml", REAL + ['runtime.autocast="bf16"'], 8, 1, 2,
                  ("ours", "reference", "reference-compiled")),
}
PARTS = ("data", "forward", "backward", "comm", "optimizer", "total")


def run_json(cmd, env=None):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        r = subprocess.run(cmd + ["--json", out], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-4000:]}")
        with open(out) as f:
            return json.load(f)
    finally:
        os.unlink(out)


def side_command(side, args, job, overrides, batch, warmup, steps, inputs):
    sets = sum((["--set", o] for o in overrides), [])
    common = ["--job", job, "--batch", str(batch), "--threads", str(args.threads), "--warmup", str(warmup),
              "--steps", str(steps), "--inputs", inputs] + sets
    if side == "ours":
        return [os.path.join(args.build, "bench", "step", "bench_step")] + common
    agg = "official" if side == "reference" else "vectorized"
    return [PYTHON, REFERENCE, "--aggregation", agg] + (["--compile"] if side == "reference-compiled" else []) + common


def environment(threads):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)  # both sides also call set_num_threads
    return env


def measure_peak(args):
    exe = os.path.join(args.build, "bench", "step", "bench_gemm_peak")
    r = subprocess.run([exe, "--threads", str(args.threads), "--sizes", "256,512,1024,2048", "--reps", "5"],
                       capture_output=True, text=True, check=True, env=environment(args.threads))
    return json.loads(r.stdout)


def summarize(runs, fl, batch, peak_gflops):
    med = {p: statistics.median(r["median_s"].get(p, 0.0) or 0.0 for r in runs) for p in PARTS + ("cpu",)}
    return dict(
        reps=len(runs), median_s=med, samples_per_s=batch / med["total"],
        per_rep_samples_per_s=[batch / r["median_s"]["total"] for r in runs],
        # CPU time of the process per step (all threads): steadier than wall time on a shared machine
        cpu_s=med["cpu"],
        peak_rss_mb=max(r["peak_rss_mb"] for r in runs),
        gflops=fl["total"] / med["total"] / 1e9,
        mfu=fl["total"] / med["total"] / 1e9 / peak_gflops,
        first=runs[0],
    )


def run_case(name, args, peak):
    job, overrides, batch, warmup, steps, case_sides = CASES[name]
    if args.steps:
        steps = args.steps
    if args.warmup is not None:
        warmup = args.warmup
    shapes = model_shapes(jobfile.load_job(os.path.join(REPO, job), overrides))
    fl = flops.mgca_step(shapes, batch)
    with tempfile.TemporaryDirectory(prefix="mgca-bench-step-") as tmp:
        inputs = os.path.join(tmp, "inputs.safetensors")
        subprocess.run([PYTHON, REFERENCE, "--job", job, "--batch", str(batch), "--pool", "4", "--write-inputs",
                        inputs] + sum((["--set", o] for o in overrides), []), cwd=REPO, check=True)
        sides = [s for s in args.sides.split(",") if s and s in case_sides]
        runs = {s: [] for s in sides}
        for rep in range(args.reps):
            order = sides[rep % len(sides):] + sides[:rep % len(sides)]
            for side in order:
                cmd = side_command(side, args, job, overrides, batch, warmup, steps, inputs)
                r = run_json(cmd, environment(args.threads))
                runs[side].append(r)
                # CPU time too: a run cut short keeps both figures in its log
                print(f"[{name}] rep {rep + 1}/{args.reps} {side:22s} {batch / r['median_s']['total']:8.3f} samples/s "
                      f"{r['median_s'].get('cpu', 0.0):8.3f} CPU s/step", file=sys.stderr, flush=True)
    result = dict(job=job, overrides=overrides, batch=batch, warmup=warmup, steps=steps,
                  flops_per_step=fl["total"], sides={})
    for side in sides:
        result["sides"][side] = summarize(runs[side], fl, batch, peak["peak_gflops"])
    if "ours" in runs:
        for side in sides:
            if side != "ours":
                result[f"ratio_vs_{side}"] = result["sides"]["ours"]["samples_per_s"] / result["sides"][side][
                    "samples_per_s"]
                result[f"cpu_ratio_vs_{side}"] = result["sides"][side]["cpu_s"] / result["sides"]["ours"]["cpu_s"]
    return result


def vs(case, side):
    if f"ratio_vs_{side}" not in case:
        return "–"
    return f"{case[f'ratio_vs_{side}']:.2f}×; {case.get(f'cpu_ratio_vs_{side}', float('nan')):.2f}×"


def markdown(res):
    reps = max(s["reps"] for c in res["cases"].values() for s in c["sides"].values())
    lines = [f"{res['threads']} threads per process; medians over {reps} alternating repetitions of each side "
             "(each: per-step medians of its timed steps: "
             + ", ".join(f"{n} {c['warmup']} warm-up + {c['steps']} timed" for n, c in res["cases"].items()) + "). "
             f"Peak fp32 GEMM (at::mm, {res['threads']} threads): {res['peak']['peak_gflops']:.1f} GFLOP/s.", "",
             "| case | side | samples/s per rank | data ms | forward ms | backward ms | exposed comm ms | optimizer ms "
             "| step ms | CPU s / step | peak RSS MiB | MFU | ours vs this side (wall; CPU) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, case in res["cases"].items():
        for side, s in case["sides"].items():
            m = s["median_s"]
            lines.append(f"| {name} (b={case['batch']}) | {side} | {s['samples_per_s']:.2f} | {1e3 * m['data']:.1f} "
                         f"| {1e3 * m['forward']:.1f} | {1e3 * m['backward']:.1f} | {1e3 * m['comm']:.1f} "
                         f"| {1e3 * m['optimizer']:.1f} | {1e3 * m['total']:.1f} | {s.get('cpu_s', 0):.2f} "
                         f"| {s['peak_rss_mb']:.0f} | {100 * s['mfu']:.1f} % | {vs(case, side)} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="tiny,real")
    ap.add_argument("--sides", default=",".join(ALL_SIDES))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="timed steps per run (default: per case)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per run (default: per case)")
    ap.add_argument("--build", default=os.path.join(REPO, "build", "release"))
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--markdown", help="write the table here")
    args = ap.parse_args(argv)
    peak = measure_peak(args)
    res = dict(threads=args.threads, peak=peak, cases={})
    for name in [c for c in args.cases.split(",") if c]:
        if name not in CASES:
            ap.error(f"unknown case {name!r}: {sorted(CASES)}")
        res["cases"][name] = run_case(name, args, peak)
        if args.json:  # after every case: a later case's failure keeps the earlier ones
            with open(args.json, "w") as f:
                f.write(json.dumps(res, indent=1) + "\n")
    table = markdown(res)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
