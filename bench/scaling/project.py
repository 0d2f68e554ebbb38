#!/opt/mgca-venv/bin/python
"""Projects the MGCA step time to W = 8 … 512 GPUs (docs/scaling.md).

    /opt/mgca-venv/bin/python bench/scaling/project.py --job jobs/mgca-vit-b16.toml \
        [--batch 72] [--compute-ms 30 | --mfu 0.35 --peak-tflops 989] [--syncbn allreduce|allgather]
        [--grad-dtype fp32|bf16]
        [--markdown] [--json OUT]

Step time(W) = compute (constant per GPU in weak scaling) + every collective
on the critical path + the part of the gradient all-reduce that backward
does not hide. The collectives of one MGCA step, per rank (docs/contract.md §2, §6):

  gradient sync   all-reduce (avg) of every trainable gradient, fp32 (bf16
                  with comm.grad_dtype = "bf16", `--grad-dtype bf16`), in
                  buckets (comm.bucket_mb; the first 1 MiB), launched from
                  backward hooks: overlaps backward.
  ITA / ConVIRT   all-gather of [v | t] (b × 2d, fp32) forward, reduce-scatter
                  of its gradient backward: on the critical path.
  Sinkhorn        1 + iterations all-reduces of 2·K fp32 (max, then row sums):
                  latency-bound, on the critical path.
  SyncBatchNorm   per BN layer of the heads: forward all-reduce of 2C+1
                  fp64 sums (count, Σx, Σx²), backward all-reduce of 2C fp64
                  sums: on the critical path, latency-bound, independent of W.
                  `--syncbn allgather` models the former forward (and torch's
                  SyncBatchNorm): an all-gather of [W, 2C+1] fp64 statistics,
                  which grows with W.
  bookkeeping     all-reduce of the loss parts, of the preemption flag.

Collective costs use nccl-tests' bus-bandwidth definitions: all-reduce
t = α_ar(W) + 2(W−1)/W · n / busbw(W); all-gather / reduce-scatter of a
total of n bytes t = α_ag(W) + (W−1)/W · n / busbw(W). busbw(W) is the
NVLink figure inside one node and the InfiniBand figure beyond it. The
gradient buckets are simulated: bucket k is ready when backward has produced
its share of the gradient bytes (uniformly over backward), buckets go out
one after another, and what runs past the end of backward is exposed.

Every network figure is an assumption stated in ASSUMPTIONS (and printed);
change them on the command line to match another machine.
"""
import argparse
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import flops  # noqa: E402
import jobfile  # noqa: E402
from mgca_official import model_shapes  # noqa: E402

# Defaults: an HGX/DGX H100 SXM cluster, 8 GPUs per node, one 400 Gb/s
# InfiniBand NDR adapter per GPU (rail-optimised fat tree). PRESETS below
# swap in a node with a single adapter, where the gradient sync shows.
ASSUMPTIONS = {
    "gpus_per_node": (8, "HGX/DGX H100: 8 GPUs per node on NVSwitch"),
    "nvlink_busbw_gbs": (360.0, "NVLink 4: 450 GB/s per direction per GPU (NVIDIA H100 SXM datasheet, "
                                "900 GB/s bidirectional); NCCL all-reduce reaches ~80 % of it as bus bandwidth"),
    "nics_per_node": (8, "DGX H100: 8 ConnectX-7 adapters per node, one per GPU"),
    "nic_gbs": (50.0, "InfiniBand NDR: 400 Gb/s = 50 GB/s per direction per adapter"),
    "ib_efficiency": (0.85, "share of the adapters' bandwidth NCCL reaches across nodes"),
    "alpha_intra_us": (10.0, "latency of a small NCCL all-reduce inside a node (LL protocol, ~10 µs in nccl-tests)"),
    "alpha_inter_us": (20.0, "latency of a small NCCL all-reduce across 2 nodes (tree, ~20 µs)"),
    "alpha_per_doubling_us": (5.0, "added small all-reduce latency per doubling of the node count (tree depth)"),
    "ring_hop_us": (1.0, "per-rank latency of a ring all-gather / reduce-scatter (W−1 pipelined hops)"),
    "peak_tflops": (989.0, "H100 SXM dense bf16 peak (NVIDIA datasheet; 1979 is the sparse figure)"),
    "mfu": (0.35, "model FLOP utilisation assumed for the GPU step when no measured compute time is given"),
}

PRESETS = {
    "h100-rail": {},
    "h100-one-nic": {"nics_per_node": 1},
}


def alpha_allreduce(w, a):
    """Latency of a small all-reduce over w ranks (seconds)."""
    if w <= 1:
        return 0.0
    if w <= a["gpus_per_node"]:
        return a["alpha_intra_us"] * 1e-6
    nodes = w / a["gpus_per_node"]
    return (a["alpha_inter_us"] + a["alpha_per_doubling_us"] * max(0.0, math.log2(nodes) - 1)) * 1e-6


def busbw(w, a):
    """Bus bandwidth of a ring collective over w ranks (bytes/s). Across nodes each
    ring crosses every node boundary once, so a node's boundary traffic is spread
    over its adapters: the bound is nics × adapter bandwidth, or NVLink if lower."""
    if w <= a["gpus_per_node"]:
        return a["nvlink_busbw_gbs"] * 1e9
    ib = a["nics_per_node"] * a["nic_gbs"] * a["ib_efficiency"]
    return min(a["nvlink_busbw_gbs"], ib) * 1e9


def t_allreduce(n_bytes, w, a):
    if w <= 1:
        return 0.0
    return alpha_allreduce(w, a) + 2 * (w - 1) / w * n_bytes / busbw(w, a)


def t_allgather(total_bytes, w, a):
    """All-gather (or reduce-scatter) whose full output is total_bytes."""
    if w <= 1:
        return 0.0
    return alpha_allreduce(w, a) + (w - 1) * a["ring_hop_us"] * 1e-6 + (w - 1) / w * total_bytes / busbw(w, a)


def gradient_exposed(grad_bytes, backward_s, w, a, bucket_mb, first_bucket_mb):
    """(total all-reduce time, exposed time after backward) of the bucketed gradient sync."""
    sizes, left = [], grad_bytes
    first = first_bucket_mb * 2**20
    sizes.append(min(first, left))
    left -= sizes[0]
    while left > 0:
        sizes.append(min(bucket_mb * 2**20, left))
        left -= sizes[-1]
    done_bytes, finish, total = 0.0, 0.0, 0.0
    for s in sizes:
        done_bytes += s
        ready = backward_s * done_bytes / grad_bytes
        t = t_allreduce(s, w, a)
        total += t
        finish = max(finish, ready) + t
    return total, max(0.0, finish - backward_s)


def syncbn_forward_bytes(c, w, syncbn):
    """Bytes one rank receives in SyncBatchNorm's forward collective for C channels."""
    return (w if syncbn == "allgather" else 1) * (2 * c + 1) * 8


def project(shapes, batch, worlds, a, compute_s=None, bucket_mb=25.0, first_bucket_mb=1.0, grad_dtype_bytes=4,
            syncbn="allreduce"):
    params = flops.mgca_parameters(shapes)
    # the prototypes' gradient is dropped in the first epoch only: count it
    grad_bytes = params["total"] * grad_dtype_bytes
    fl = flops.mgca_step(shapes, batch)
    if compute_s is None:
        compute_s = fl["total"] / (a["peak_tflops"] * 1e12 * a["mfu"])
    backward_s = compute_s * fl["backward"] / fl["total"]
    d, k, hid = shapes["embed_dim"], shapes["num_prototypes"], shapes["head_hidden"]
    bn_channels = [hid] * 4 + [d] * 4  # bn1 (C = hidden) and bn2 (C = d) of the four heads
    rows = []
    for w in worlds:
        n = w * batch
        grad_total, grad_exposed = gradient_exposed(grad_bytes, backward_s, w, a, bucket_mb, first_bucket_mb)
        ita = 2 * t_allgather(n * 2 * d * 4, w, a)  # forward all-gather + backward reduce-scatter
        sinkhorn = (1 + shapes["sinkhorn_iterations"]) * t_allreduce(2 * k * 4, w, a)
        forward = t_allgather if syncbn == "allgather" else t_allreduce
        syncbn_s = sum(forward(syncbn_forward_bytes(c, w, syncbn), w, a) + t_allreduce(2 * c * 8, w, a)
                       for c in bn_channels)
        other = 2 * t_allreduce(64, w, a)
        # ITA compute grows with N (b × N logits per direction, forward and backward)
        ita_compute = 3 * 2 * 2 * batch * n * d / (a["peak_tflops"] * 1e12 * a["mfu"]) if w > 1 else 0.0
        critical = ita + sinkhorn + syncbn_s + other
        step = compute_s + ita_compute + critical + grad_exposed
        rows.append(dict(world=w, global_batch=n, compute_ms=compute_s * 1e3, ita_compute_ms=ita_compute * 1e3,
                         grad_allreduce_ms=grad_total * 1e3, grad_exposed_ms=grad_exposed * 1e3,
                         ita_gather_ms=ita * 1e3, sinkhorn_ms=sinkhorn * 1e3, syncbn_ms=syncbn_s * 1e3,
                         syncbn_bn1_bytes=syncbn_forward_bytes(hid, w, syncbn),
                         other_ms=other * 1e3, step_ms=step * 1e3,
                         exposed_share=(critical + grad_exposed) / step,
                         efficiency=compute_s / step))
    return dict(grad_bytes=grad_bytes, params=params["total"], flops_per_step=fl["total"], compute_ms=compute_s * 1e3,
                backward_ms=backward_s * 1e3, batch=batch, syncbn=syncbn, bn1_channels=hid,
                grad_dtype="bf16" if grad_dtype_bytes == 2 else "fp32", rows=rows)


def human_bytes(n):
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def markdown(result, a):
    out = [f"Per GPU: batch {result['batch']}, {result['flops_per_step'] / 1e12:.2f} TFLOP per step, "
           f"compute {result['compute_ms']:.1f} ms (backward {result['backward_ms']:.1f} ms), "
           f"gradient {result['grad_bytes'] / 2**20:.0f} MiB {result['grad_dtype']} "
           f"({result['params'] / 1e6:.1f} M parameters). "
           f"SyncBatchNorm forward: {result['syncbn']} (bn1 message: bytes one rank receives, "
           f"C = {result['bn1_channels']}).", "",
           "| GPUs | global batch | grad all-reduce (exposed) ms | ITA gather+scatter ms | Sinkhorn ms "
           "| SyncBN bn1 message | SyncBN ms | step ms | exposed comm | efficiency |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        out.append(f"| {r['world']} | {r['global_batch']} | {r['grad_allreduce_ms']:.1f} ({r['grad_exposed_ms']:.1f}) "
                   f"| {r['ita_gather_ms']:.2f} | {r['sinkhorn_ms']:.2f} | {human_bytes(r['syncbn_bn1_bytes'])} "
                   f"| {r['syncbn_ms']:.2f} | {r['step_ms']:.1f} "
                   f"| {100 * r['exposed_share']:.1f} % | {100 * r['efficiency']:.1f} % |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", default=os.path.join(HERE, "..", "..", "jobs", "mgca-vit-b16.toml"))
    ap.add_argument("--batch", type=int, default=0, help="per GPU (default: the job's data.batch_size)")
    ap.add_argument("--compute-ms", type=float, help="measured compute time of one step on one GPU")
    ap.add_argument("--worlds", default="8,16,32,64,128,256,512")
    ap.add_argument("--bucket-mb", type=float, default=25.0)
    ap.add_argument("--first-bucket-mb", type=float, default=1.0)
    ap.add_argument("--syncbn", default="allreduce", choices=["allreduce", "allgather"],
                    help="SyncBatchNorm's forward collective: today's fixed-size all-reduce, or the former "
                         "all-gather of per-rank statistics")
    ap.add_argument("--grad-dtype", default="fp32", choices=["fp32", "bf16"],
                    help="what the gradient all-reduce sends (comm.grad_dtype native or bf16)")
    ap.add_argument("--preset", default="h100-rail", choices=sorted(PRESETS),
                    help="a set of network assumptions (options below override single figures)")
    for key, (value, _) in ASSUMPTIONS.items():
        ap.add_argument("--" + key.replace("_", "-"), type=type(value), default=None)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table instead of JSON")
    ap.add_argument("--json", help="also write the JSON result here")
    args = ap.parse_args(argv)
    a = {k: v for k, (v, _) in ASSUMPTIONS.items()}
    a.update(PRESETS[args.preset])
    a.update({k: getattr(args, k) for k in ASSUMPTIONS if getattr(args, k) is not None})
    shapes = model_shapes(jobfile.load_job(args.job))
    batch = args.batch or shapes["batch_size"]
    worlds = [int(x) for x in args.worlds.split(",")]
    result = project(shapes, batch, worlds, a, args.compute_ms / 1e3 if args.compute_ms else None,
                     args.bucket_mb, args.first_bucket_mb, grad_dtype_bytes=2 if args.grad_dtype == "bf16" else 4,
                     syncbn=args.syncbn)
    result["preset"] = args.preset
    result["assumptions"] = {k: dict(value=a[k], source=ASSUMPTIONS[k][1]) for k in a}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(markdown(result, a) if args.markdown else json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
