#!/opt/mgca-venv/bin/python
"""The step loop's stall per checkpoint, synchronous vs asynchronous, at the
real shapes (jobs/mgca-vit-b16.toml: ViT-B/16 + 6-layer BERT, K = 500, random
weights), on CPU.

    /opt/mgca-venv/bin/python bench/checkpoint/run_checkpoint.py [--steps 6] [--reps 2] [--threads 2] \
        [--batch 2] [--build build/release] [--work DIR] [--json OUT]

Each run is `mgca train` (one rank) with checkpoint.every_steps = 1, so every
step but the last is followed by a checkpoint; the trainer logs the stall of
each ("the step loop stalled X s"): for checkpoint.async = false the whole
write (serialise, fsync, rename, DONE), for true the copy to host memory.
The last step's checkpoint is not counted (the run then waits for the
write). An asynchronous stall is split into the wait for the previous write
and the host copy. Runs alternate sync/async `--reps` times; the figures are the median
stall over all checkpoints of a mode, and the median step time of the steps
that ran while a background write was in flight (async) vs those of the
synchronous runs, which had none (the writer competes for the CPU and disk).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STALL = re.compile(r"checkpoint step (\d+): the step loop stalled ([0-9.]+) s(?: \(([0-9.]+) s waiting for the previous write)?")


def run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def checkpoint_bytes(folder):
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--build", default=os.path.join(REPO, "build", "release"))
    parser.add_argument("--work", help="folder for the dataset and runs (default: a temporary one)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--modes", default="sync,async", help="sync, async or both")
    args = parser.parse_args()

    mgca = os.path.join(args.build, "src", "cli", "mgca")
    work = args.work or tempfile.mkdtemp(prefix="mgca-bench-ckpt-")
    data = os.path.join(work, "synth")
    if not os.path.exists(os.path.join(data, "dataset.json")):
        run([mgca, "synth", "--out", data, "--num", str(4 * args.batch * args.steps), "--image-size", "256"])

    modes = args.modes.split(",")
    stalls = {m: [] for m in modes}
    waits = {m: [] for m in modes}
    steps_during = {m: [] for m in modes}
    size = 0
    for rep in range(args.reps):
        for mode in (modes if rep % 2 == 0 else modes[::-1]):
            name = f"{mode}-{rep}"
            shutil.rmtree(os.path.join(work, "runs", name), ignore_errors=True)  # a newer step left by an earlier run would survive pruning
            sets = [f"data.train={data}", f"output_dir={work}/runs", f"name={name}", 'model.image_weights=""',
                    'model.text_weights=""', f"data.batch_size={args.batch}", "data.workers=1",
                    f"runtime.threads={args.threads}", f"schedule.max_steps={args.steps}",
                    "checkpoint.every_steps=1", "checkpoint.keep=1", "checkpoint.resume=none",
                    f"checkpoint.async={'true' if mode == 'async' else 'false'}", "logging.progress_interval_s=1000"]
            cmd = [mgca, "train", os.path.join(REPO, "jobs", "mgca-vit-b16.toml")]
            for s in sets:
                cmd += ["--set", s]
            log = run(cmd)
            found = [(int(step), float(s), float(w or 0)) for step, s, w in STALL.findall(log)]
            stalls[mode] += [s for step, s, w in found if step < args.steps]
            waits[mode] += [w for step, s, w in found if step < args.steps]
            with open(os.path.join(work, "runs", name, "metrics.jsonl")) as f:
                times = [json.loads(line)["time_step_s"] for line in f if line.strip()]
            steps_during[mode] += times[1:]  # step 1 runs before any checkpoint
            folder = os.path.join(work, "runs", name, "checkpoints", f"step-{args.steps:08d}")
            size = checkpoint_bytes(folder)
            print(f"{name}: stalls {[round(s, 3) for _, s, _ in found]} (waiting for the previous write: "
                  f"{[round(w, 3) for _, _, w in found]}); steps {[round(t, 2) for t in times]}",
                  flush=True)

    figures = {
        "checkpoint_mb": size / 2**20,
        "threads": args.threads,
        "batch": args.batch,
        "stall_s": {m: statistics.median(v) for m, v in stalls.items()},
        "stalls": stalls,
        "waits_for_previous_write": waits,
        "step_s": {m: statistics.median(v) for m, v in steps_during.items()},
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
