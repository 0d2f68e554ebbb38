#!/opt/mgca-venv/bin/python
"""open_clip's ClipLoss(local_loss=True, gather_with_grad=True) under mpirun:
the side of run_openclip.py that bench_ita_mpi faces, with the same
arguments, inputs, timing and memory definition (see bench_ita_mpi.cpp).

    mpirun -np 2 -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=29511 \\
        /opt/mgca-venv/bin/python bench/objectives/openclip_ita.py --b 256 [--d 128] [--reps 3] \\
        [--threads 1] [--temperature 0.07] [--seed 1000] [--dump DIR]

The rank and world size come from Open MPI's environment
(OMPI_COMM_WORLD_RANK/SIZE); torch.distributed runs over gloo.
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from open_clip.loss import ClipLoss


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def all_max(value):
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def dump(directory, rank, name, t):
    t.detach().to(torch.float32).contiguous().numpy().tofile(os.path.join(directory, f"rank{rank}-{name}.f32"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--b", type=int, default=256)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=0.07)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--dump")
    args = ap.parse_args()
    rank, world = int(os.environ["OMPI_COMM_WORLD_RANK"]), int(os.environ["OMPI_COMM_WORLD_SIZE"])
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)

    gen = torch.Generator().manual_seed(args.seed + rank)
    img = F.normalize(torch.randn(args.b, args.d, generator=gen), dim=-1).requires_grad_(True)
    txt = F.normalize(torch.randn(args.b, args.d, generator=gen), dim=-1).requires_grad_(True)
    loss_fn = ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=world)
    logit_scale = torch.tensor(1.0 / args.temperature)

    rss_before = status_kib("VmRSS")
    wall_ms, cpu_ms = [], []
    for step in range(args.reps + 1):  # step 0: warm-up
        img.grad = txt.grad = None
        dist.barrier()
        c0, t0 = time.process_time(), time.perf_counter()
        loss = loss_fn(img, txt, logit_scale)
        loss.backward()
        wall, cpu = 1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)
        if step > 0:
            wall_ms.append(all_max(wall))
            cpu_ms.append(all_max(cpu))
    step_peak_kib = all_max(status_kib("VmHWM") - rss_before)
    if args.dump:
        for name, t in (("img", img), ("txt", txt), ("loss", loss), ("grad_img", img.grad),
                        ("grad_txt", txt.grad)):
            dump(args.dump, rank, name, t)
    if rank == 0:
        print(json.dumps(dict(side="open_clip", world=world, b=args.b, N=args.b * world, d=args.d,
                              threads=args.threads, reps=args.reps, fwd_bwd_ms=statistics.median(wall_ms),
                              fwd_bwd_cpu_ms=statistics.median(cpu_ms), step_peak_mib=step_peak_kib / 1024,
                              loss=loss.item())), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
