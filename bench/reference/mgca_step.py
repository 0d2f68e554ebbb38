#!/opt/mgca-venv/bin/python
"""The MGCA training step in plain PyTorch: the baseline of bench/step.

Runs the official code's step (mgca_official.py: forward, the three losses,
backward, the prototype-gradient drop of the first epoch, AdamW as
torch.optim ships it, clipping only when the job asks for it) on synthetic
inputs, with the shapes, batch, dropout and optimizer settings of an
mgca-hpc job file, and prints one JSON object: per-step times split into
data / forward / backward / optimizer, medians, samples/s, peak memory and
the analytic FLOP count (flops.py).

    /opt/mgca-venv/bin/python bench/reference/mgca_step.py --job jobs/cpu-demo.toml \
        --threads 1 --steps 5 --warmup 2 [--inputs inputs.safetensors] [--json out.json]

CPU: the venv's torch 2.11 (same libtorch as ours). GPU: any CUDA PyTorch 2.x,
`--device cuda` (bf16 autocast around the forward, as `mgca train` on GPU; `--amp bf16` on CPU
too), `--compile` (torch.compile, inductor).
`--weights` loads an mgca-hpc model.safetensors (our names, mapped), and
`--check DIR` runs the steps that `bench_step --dump DIR` ran on our side
(its weights, inputs and metrics.jsonl) and compares every loss part and the
gradient norm (fp32, dropout must be 0).
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import contextlib
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import flops  # noqa: E402
import jobfile  # noqa: E402
import st_io  # noqa: E402
from mgca_official import MGCA, load_mgca_hpc_state, model_shapes  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))


def resolve(path):
    """Job paths are relative to the working directory; fall back to the repository root."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    alt = os.path.join(REPO, path)
    return alt if os.path.exists(alt) else path


def read_vocab(path):
    with open(resolve(path), encoding="utf-8") as f:
        return [line.strip() for line in f.read().splitlines()]


def make_inputs(shapes, vocab, count, seed):
    """Synthetic batches: images uniform in [-1, 1] (MGCA's normalized range), one gray
    channel; reports [CLS] + random WordPiece ids (continuation pieces included) + [SEP],
    content lengths uniform in [L/3, L-2] (so some reports fill all L tokens), then pads."""
    rng = np.random.default_rng(seed)
    size, length = shapes["vit"]["image_size"], shapes["max_length"]
    index = {t: i for i, t in enumerate(vocab)}
    special = {index[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    pieces = np.array([i for i, t in enumerate(vocab) if i not in special and not t.startswith("[unused")])
    images = rng.uniform(-1.0, 1.0, size=(count, 1, size, size)).astype(np.float32)
    ids = np.full((count, length), index["[PAD]"], dtype=np.int64)
    mask = np.zeros((count, length), dtype=np.int64)
    for i in range(count):
        n = int(rng.integers(length // 3, length - 2, endpoint=True))
        ids[i, 0] = index["[CLS]"]
        ids[i, 1:n + 1] = rng.choice(pieces, size=n)
        ids[i, n + 1] = index["[SEP]"]
        mask[i, :n + 2] = 1
    return {"images": images, "input_ids": ids, "attention_mask": mask}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class Clock:
    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def now(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def build(args, job):
    shapes = model_shapes(job)
    batch = args.batch or shapes["batch_size"]
    vocab = read_vocab(job.get("text", {}).get("vocab", "../shared/data/vocab/bert-base-cased-vocab.txt"))
    if len(vocab) != shapes["bert"]["vocab"]:
        raise ValueError(f"vocab has {len(vocab)} tokens, the model expects {shapes['bert']['vocab']}")
    model = MGCA(shapes, vocab, args.aggregation)
    if args.weights:
        tensors, _ = st_io.read(args.weights)
        load_mgca_hpc_state(model, tensors)
    return shapes, batch, vocab, model


def optimizer_for(model, job):
    o = job.get("optimizer", {})
    name = o.get("name", "adamw")
    cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[name]
    betas = tuple(o.get("betas", [0.9, 0.999]))
    return cls(model.parameters(), lr=float(o.get("lr", 2e-5)), betas=betas, eps=float(o.get("eps", 1e-8)),
               weight_decay=float(o.get("weight_decay", 0.05))), float(o.get("grad_clip_norm", 0.0))


def grad_norm(model):
    grads = [p.grad.detach().double().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0


def run(args):
    job = jobfile.load_job(args.job, args.set)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes, batch, vocab, model = build(args, job)
    model.to(device).train()
    opt, clip = optimizer_for(model, job)

    if args.inputs:
        data, _ = st_io.read(args.inputs)
    else:
        data = make_inputs(shapes, vocab, batch * args.pool, args.seed)
    pool = data["images"].shape[0] // batch
    if pool < 1:
        raise ValueError(f"the inputs hold {data['images'].shape[0]} samples, fewer than one batch of {batch}")
    host = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()}

    amp = args.amp
    if amp == "job":
        amp = job.get("runtime", {}).get("autocast", "auto")
        if amp == "auto":
            amp = "bf16" if device.type == "cuda" else "none"
    autocast = amp == "bf16"
    forward = torch.compile(model) if args.compile else model
    clock = Clock(device)
    steps = []
    total_steps = args.warmup + args.steps
    prof = None
    for step in range(total_steps):
        if prof is not None:  # the profiled step ended
            prof.__exit__(None, None, None)
            prof.export_chrome_trace(args.profile)
            prof = None
        if args.profile and step == args.warmup:  # as bench_step --profile: the first timed step
            prof = torch.autograd.profiler.profile()
            prof.__enter__()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = clock.now()
        k = step % pool
        sl = slice(k * batch, (k + 1) * batch)
        images = host["images"][sl].to(device, non_blocking=True).expand(-1, 3, -1, -1)  # RGB, as MGCA loads
        ids = host["input_ids"][sl].to(device, non_blocking=True)
        batch_dict = {"imgs": images, "caption_ids": ids,
                      "attention_mask": host["attention_mask"][sl].to(device, non_blocking=True),
                      "token_type_ids": torch.zeros_like(ids)}
        t1 = clock.now()
        with (torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()):
            loss_ita, loss_local, loss_proto, parts = forward(batch_dict)
            l1, l2, l3 = shapes["lambdas"]
            loss = l1 * loss_ita + l2 * loss_local + l3 * loss_proto
        t2 = clock.now()
        loss.backward()
        t3 = clock.now()
        model.on_after_backward(epoch=step // pool)  # as bench_step: the pool is one epoch
        norm = grad_norm(model) if args.check else None
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad()
        t4 = clock.now()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        # CPU time (user + system, all threads) and minor page faults of the step: robust
        # to other processes on the machine, unlike wall time.
        record = dict(data=t1 - t0, forward=t2 - t1, backward=t3 - t2, optimizer=t4 - t3, total=t4 - t0,
                      cpu=(ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
                      page_faults=ru1.ru_minflt - ru0.ru_minflt,
                      loss=float(loss), **{k: float(v) for k, v in parts.items()})
        if norm is not None:
            record["grad_norm"] = norm
        steps.append(record)

    if prof is not None:
        prof.__exit__(None, None, None)
        prof.export_chrome_trace(args.profile)
    timed = steps[args.warmup:]
    med = {k: statistics.median(s[k] for s in timed)
           for k in ("data", "forward", "backward", "optimizer", "total", "cpu", "page_faults")}
    fl = flops.mgca_step(shapes, batch)
    result = dict(
        side="reference", implementation="PyTorch (official MGCA code structure)",
        torch=torch.__version__, device=str(device), threads=torch.get_num_threads(),
        amp=("bf16" if autocast else "fp32"), compiled=args.compile, aggregation=args.aggregation, fused_attention=hasattr(
            torch.nn.functional, "scaled_dot_product_attention"),
        job=args.job, overrides=args.set, batch=batch, warmup=args.warmup, steps=steps,
        median_s=med, samples_per_s=batch / med["total"] if timed else None,
        peak_rss_mb=peak_rss_mb(),
        peak_gpu_mb=(torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None),
        flops_per_step=fl["total"], flops_forward=fl["forward"],
        achieved_gflops=(fl["total"] / med["total"] / 1e9 if timed else None),
    )
    return result


# ----------------------------------------------------------------------------- check against our side

# Our loss part names (metrics.jsonl) -> the reference's.
PART_NAMES = {"loss": "loss", "loss_ita": "loss_ita", "loss_cta": "loss_cta", "loss_cpa": "loss_cpa"}


def check(args):
    d = args.check
    args.weights = os.path.join(d, "initial.safetensors")
    args.inputs = os.path.join(d, "inputs.safetensors")
    with open(os.path.join(d, "metrics.jsonl")) as f:
        ours = [json.loads(line) for line in f if line.strip()]
    job = jobfile.load_job(args.job, args.set)
    dropout = model_shapes(job)["dropout"]
    if dropout != 0.0:
        raise ValueError(f"--check needs model.dropout = 0 (the job has {dropout}): dropout draws differ")
    args.warmup, args.steps = 0, len(ours)
    result = run(args)
    # Step 1 compares the same computation from the same weights; each later step
    # also carries the previous updates, where fp32 differences grow (AdamW
    # normalizes tiny gradient differences): 10× the tolerance per step.
    failures, lines = 0, []
    for i, (mine, theirs) in enumerate(zip(result["steps"], ours)):
        tol = args.rtol * 10 ** i
        for our_name, ref_name in list(PART_NAMES.items()) + [("grad_norm", "grad_norm")]:
            if our_name not in theirs:
                continue
            a, b = theirs[our_name], mine[ref_name]
            rel = abs(a - b) / max(abs(b), 1e-12)
            failures += rel > tol
            lines.append(f"step {i + 1} {our_name:12s} ours {a:.8g} reference {b:.8g} rel {rel:.2e} "
                         f"(tolerance {tol:.0e}){'  MISMATCH' if rel > tol else ''}")
    print("\n".join(lines))
    ok = failures == 0 and lines
    print(f"{'OK' if ok else 'MISMATCH'}: {len(lines)} values compared, {failures} outside tolerance")
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", required=True, help="mgca-hpc job file (shapes, batch, dropout, optimizer)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a job key")
    ap.add_argument("--batch", type=int, default=0, help="samples per step (default: data.batch_size)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    ap.add_argument("--pool", type=int, default=4, help="distinct synthetic batches, cycled")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--amp", default="job", choices=["job", "bf16", "none"],
                    help="autocast: job = the job's runtime.autocast (auto: bf16 on GPU, none on CPU)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the model (inductor; on CPU it generates and compiles C++ first)")
    ap.add_argument("--aggregation", default="official", choices=["official", "vectorized"],
                    help="subword→word aggregation: the official Python loop or one index_add")
    ap.add_argument("--weights", help="mgca-hpc model.safetensors to start from (default: random init)")
    ap.add_argument("--inputs", help="safetensors with images [n,1,H,W] f32, input_ids/attention_mask [n,L] i64")
    ap.add_argument("--write-inputs", metavar="FILE", help="write --pool synthetic batches to FILE and exit")
    ap.add_argument("--check", metavar="DIR", help="compare with the steps `bench_step --dump DIR` ran")
    ap.add_argument("--rtol", type=float, default=1e-4, help="--check tolerance of step 1 (relative; ×10 per later step)")
    ap.add_argument("--json", help="write the result here too")
    ap.add_argument("--profile", metavar="TRACE.json",
                    help="run the first timed step under the autograd profiler and write its chrome trace")
    args = ap.parse_args(argv)

    if args.write_inputs:
        job = jobfile.load_job(args.job, args.set)
        shapes = model_shapes(job)
        batch = args.batch or shapes["batch_size"]
        vocab = read_vocab(job.get("text", {}).get("vocab", "../shared/data/vocab/bert-base-cased-vocab.txt"))
        st_io.write(args.write_inputs, make_inputs(shapes, vocab, batch * args.pool, args.seed),
                    {"batch_size": batch, "seed": args.seed, "job": args.job})
        return 0
    if args.check:
        return check(args)
    result = run(args)
    text = json.dumps(result, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
