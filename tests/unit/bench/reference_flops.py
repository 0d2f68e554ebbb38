#!/opt/mgca-venv/bin/python
"""Checks the analytic FLOP count (bench/reference/flops.py) against the FLOPs
torch.profiler records for one forward of the reference model.

  reference_flops.py REPO_DIR JOB BATCH

The profiler counts aten::addmm/mm/bmm/conv2d; conv1d (the local heads) and
the fused attention calls (scaled_dot_product_attention, torch >= 2.0) are
counted here from the recorded shapes. The analytic count books ITA as two
b×N products (our distributed form) where the single-process reference
computes one, a difference of 2·b·b·d FLOPs: tolerance 1e-5 relative.
The analytic parameter count must equal the module's exactly.
"""
import os
import sys

import torch
from torch.profiler import profile

repo, job_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, os.path.join(repo, "bench", "reference"))
import flops  # noqa: E402
import jobfile  # noqa: E402
import mgca_step  # noqa: E402
from mgca_official import MGCA, model_shapes  # noqa: E402

torch.manual_seed(0)
job = jobfile.load_job(os.path.join(repo, job_path))
shapes = model_shapes(job)
vocab = mgca_step.read_vocab(os.path.join(os.environ.get("MGCA_SHARED_DATA", os.path.join(repo, "../shared/data")),
                                          "vocab", "bert-base-cased-vocab.txt"))
model = MGCA(shapes, vocab)
d = mgca_step.make_inputs(shapes, vocab, batch, 1)
inputs = {"imgs": torch.from_numpy(d["images"]).expand(-1, 3, -1, -1),
          "caption_ids": torch.from_numpy(d["input_ids"]),
          "attention_mask": torch.from_numpy(d["attention_mask"]),
          "token_type_ids": torch.zeros_like(torch.from_numpy(d["input_ids"]))}
with profile(with_flops=True, record_shapes=True) as prof:
    model(inputs)
def inside_attention(e):
    """True under a fused attention call (whose matmuls are counted at that call)."""
    parent = e.cpu_parent
    while parent is not None:
        if parent.name == "aten::scaled_dot_product_attention":
            return True
        parent = parent.cpu_parent
    return False


measured = 0
for e in prof.events():
    if e.name in ("aten::addmm", "aten::mm", "aten::bmm", "aten::conv2d") and not inside_attention(e):
        measured += e.flops or 0
    elif e.name == "aten::conv1d":
        x, w = e.input_shapes[0], e.input_shapes[1]
        measured += 2 * x[0] * x[2] * w[0] * w[1] * w[2]
    elif e.name == "aten::scaled_dot_product_attention":
        # The profiler books no FLOPs for it: Q·Kᵀ and P·V, 2·B·H·L·S·Dh each.
        q, k = e.input_shapes[0], e.input_shapes[1]
        measured += 4 * q[0] * q[1] * q[2] * k[2] * q[3]
analytic = flops.mgca_step(shapes, batch)["forward"]
rel = abs(measured - analytic) / measured
print(f"{job_path} b={batch}: profiler {measured / 1e9:.6f} GFLOP, analytic {analytic / 1e9:.6f} GFLOP, rel {rel:.2e}")
# The parameter count (gradient bytes of the scaling model) against the module's.
counted = sum(p.numel() for p in model.parameters())
params = flops.mgca_parameters(shapes)["total"]
print(f"parameters: module {counted}, analytic {params}")
sys.exit(0 if rel <= 1e-5 and counted == params else 1)
