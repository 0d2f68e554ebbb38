#!/opt/mgca-venv/bin/python
"""Our ITA beside open_clip's ClipLoss(local_loss=True, gather_with_grad=True)
under the same `mpirun -np 2`, alternating, medians.

    /opt/mgca-venv/bin/python bench/objectives/run_openclip.py [--check] [--n 512,2048,8192] \\
        [--rounds 3] [--reps 3] [--threads 1] [--tile 256] [--build build/release] [--markdown OUT.md]

Sides (each an `mpirun -np 2` job; every rank has b = N / 2 rows, d = 128,
τ = 0.07, the same seeded inputs on every side):
  ours        bench_ita_mpi with objectives.ita_tile = N (one b × N matrix per direction)
  ours-tiled  bench_ita_mpi with objectives.ita_tile = --tile (memory-flat loss)
  open_clip   openclip_ita.py (torch.distributed over gloo)
The global batch grows by growing b per rank (2 ranks on this machine). A
round runs every side once, in an order that rotates from round to round;
a run reports the median over its timed steps (after one warm-up) of the
slowest rank's forward + backward wall and CPU time, and the step's peak
memory (VmHWM after the steps − VmRSS before them, the larger rank's). The
table gives the median over rounds.

--check runs all three at N = 512 with a 128-column tile, dumps every rank's
inputs, loss and gradients, and asserts that the inputs are bit-identical
and that loss and gradients agree within fp32 tolerance (exit 1 otherwise).
"""
import argparse
import os
import json
import statistics
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/opt/mgca-venv/bin/python"
MPIRUN = ["mpirun", "--allow-run-as-root", "--bind-to", "none", "-np", "2"]
SIDES = ("ours", "ours-tiled", "open_clip")
LOSS_RTOL, GRAD_RTOL = 1e-6, 1e-5  # loss relative; gradients: max |diff| over max |open_clip's|


def command(side, args, b, reps, tile, dump=None):
    common = ["--b", str(b), "--reps", str(reps), "--threads", str(args.threads)]
    if dump:
        common += ["--dump", dump]
    if side == "open_clip":
        return MPIRUN + ["-x", "MASTER_ADDR=127.0.0.1", "-x", f"MASTER_PORT={args.port}",
                         PYTHON, os.path.join(HERE, "openclip_ita.py")] + common
    exe = os.path.join(args.build, "bench", "objectives", "bench_ita_mpi")
    return MPIRUN + [exe] + common + (["--tile", str(tile)] if side == "ours-tiled" else [])


def run(cmd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def check(args):
    ok = True
    with tempfile.TemporaryDirectory(prefix="mgca-openclip-") as tmp:
        for side in SIDES:
            os.makedirs(os.path.join(tmp, side))
            run(command(side, args, 256, 1, 128, dump=os.path.join(tmp, side)))
        load = lambda side, r, name: np.fromfile(os.path.join(tmp, side, f"rank{r}-{name}.f32"), dtype=np.float32)
        for side in ("ours", "ours-tiled"):
            for r in range(2):
                for name in ("img", "txt"):
                    same = np.array_equal(load(side, r, name), load("open_clip", r, name))
                    ok &= same
                    if not same:
                        print(f"{side} rank {r}: input {name} differs from open_clip's", file=sys.stderr)
                ref, got = load("open_clip", r, "loss"), load(side, r, "loss")
                loss_err = float(abs(got - ref).max() / abs(ref).max())
                grad_err = max(float(abs(load(side, r, g) - load("open_clip", r, g)).max()
                                     / abs(load("open_clip", r, g)).max()) for g in ("grad_img", "grad_txt"))
                good = loss_err <= LOSS_RTOL and grad_err <= GRAD_RTOL
                ok &= good
                print(f"{side:10s} rank {r}: loss {got[0]:.7f} vs open_clip {ref[0]:.7f} (rel {loss_err:.1e}); "
                      f"gradients max rel {grad_err:.1e} {'ok' if good else 'FAIL'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--n", default="512,2048,8192", help="global batches N (even)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3, help="timed steps per run (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="threads per rank")
    ap.add_argument("--tile", type=int, default=256, help="ours-tiled: objectives.ita_tile")
    ap.add_argument("--port", type=int, default=29511)
    ap.add_argument("--build", default=os.path.join(REPO, "build", "release"))
    ap.add_argument("--markdown", help="write the table here")
    args = ap.parse_args()
    if args.check:
        return check(args)
    lines = ["| N | b per rank | side | fwd+bwd ms | CPU ms (per rank) | step peak MiB per rank "
             "| open_clip / this side: time; CPU; memory |", "|---:|---:|---|---:|---:|---:|---:|"]
    for n in (int(x) for x in args.n.split(",")):
        runs = {s: [] for s in SIDES}
        for rnd in range(args.rounds):
            for side in SIDES[rnd % 3:] + SIDES[:rnd % 3]:
                r = run(command(side, args, n // 2, args.reps, args.tile))
                runs[side].append(r)
                print(f"N={n} round {rnd + 1}/{args.rounds} {side:10s} {r['fwd_bwd_ms']:9.1f} ms "
                      f"{r['step_peak_mib']:8.1f} MiB", file=sys.stderr, flush=True)
        med = {s: {k: statistics.median(r[k] for r in runs[s]) for k in ("fwd_bwd_ms", "fwd_bwd_cpu_ms",
                                                                          "step_peak_mib")} for s in SIDES}
        oc = med["open_clip"]
        for s in SIDES:
            m = med[s]
            ratio = "–" if s == "open_clip" else (
                f"{oc['fwd_bwd_ms'] / m['fwd_bwd_ms']:.2f}×; {oc['fwd_bwd_cpu_ms'] / m['fwd_bwd_cpu_ms']:.2f}×; "
                f"{oc['step_peak_mib'] / m['step_peak_mib']:.2f}×")
            lines.append(f"| {n:,} | {n // 2:,} | {s}{f' (tile {args.tile})' if s == 'ours-tiled' else ''} "
                         f"| {m['fwd_bwd_ms']:.1f} | {m['fwd_bwd_cpu_ms']:.1f} | {m['step_peak_mib']:.1f} | {ratio} |")
    table = "\n".join(lines)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
