#!/opt/mgca-venv/bin/python
"""The official MGCA loss code run on each rank's part of a golden batch, for
test_local.cpp (objectives.negatives = objectives.sinkhorn = "local").

  official_parts.py GOLDEN.safetensors PARTS OUT.safetensors

The golden batch's B rows are cut into PARTS consecutive parts of B/PARTS rows
(rank r's rows under the trainer's layout). On each part, as one GPU of the
official code sees its own batch: bench/reference/mgca_official.py's
`MGCA.loss` (ITA over the part's rows only, per-GPU Sinkhorn; the ViT branch
when the file has `in_img_attn_map`, else the ResNet branch), backward of
loss_ita + loss_local + loss_proto. OUT holds, per part r, float64 tensors
"r/<name>": the loss parts, acc1, the Sinkhorn codes q_img and q_report, and
the gradients w.r.t. the raw features and the normalized prototypes.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

golden, parts, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(repo, "bench", "reference"))
import st_io  # noqa: E402
from mgca_official import MGCA  # noqa: E402

t, meta = st_io.read(golden)
hp = json.loads(meta["hparams_json"])
dtype = torch.float64 if t["in_img_feat"].dtype == np.float64 else torch.float32
B, d = t["in_img_feat"].shape
K = t["in_proto_weight_raw"].shape[0]
assert B % parts == 0, f"{B} rows do not split into {parts} parts"
b = B // parts
vit = "in_img_attn_map" in t
shapes = dict(tau_ita=hp["softmax_temperature"], tau_local=hp["local_temperature"],
              tau_proto=hp["proto_temperature"], epsilon=hp["epsilon"],
              sinkhorn_iterations=hp["sinkhorn_iterations"], quantiles=(0.1, 0.9), freeze_prototypes_epochs=1)

result = {}
for r in range(parts):
    rows = slice(r * b, (r + 1) * b)
    model = MGCA.__new__(MGCA)  # only the loss: no encoders
    torch.nn.Module.__init__(model)
    model.hp = shapes
    model.prototype_layer = torch.nn.Linear(d, K, bias=False).to(dtype)
    with torch.no_grad():
        model.prototype_layer.weight.copy_(torch.from_numpy(t["in_proto_weight_raw"]).to(dtype))
    raw = {n: torch.from_numpy(t["in_" + n][rows]).to(dtype).requires_grad_()
           for n in ("img_feat", "report_feat", "patch_feat", "word_feat")}
    emb = {n: F.normalize(v, dim=-1) for n, v in raw.items()}
    attn_map = torch.from_numpy(t["in_img_attn_map"][rows]).to(dtype) if vit else None
    loss_ita, loss_local, loss_proto, p = model.loss(
        emb["img_feat"], emb["report_feat"], emb["patch_feat"], emb["word_feat"],
        torch.from_numpy(t["in_word_attn"][rows]).to(dtype), torch.from_numpy(t["in_words_pad_mask"][rows]),
        attn_map)
    total = loss_ita + loss_local + loss_proto
    total.backward()
    with torch.no_grad():  # the codes as the loss above computed them (the weights are normalized now)
        w = model.prototype_layer.weight
        codes = {n: MGCA.sinkhorn(torch.exp(emb[f].mm(w.t()) / shapes["epsilon"]).t(), shapes["sinkhorn_iterations"])
                 for n, f in (("q_img", "img_feat"), ("q_report", "report_feat"))}
    values = dict(loss=total, loss_ita=loss_ita, loss_ita_i2t=p["loss_ita_i2t"], loss_ita_t2i=p["loss_ita_t2i"],
                  loss_cta=loss_local, loss_word=p["loss_word"], loss_patch=p["loss_patch"], loss_cpa=loss_proto,
                  acc1=p["acc1"], **codes)
    for n in ("img_feat", "report_feat", "patch_feat", "word_feat"):
        values["grad_" + n] = raw[n].grad
    values["grad_proto"] = model.prototype_layer.weight.grad
    for name, value in values.items():
        result[f"{r}/{name}"] = value.detach().double().reshape(-1 if value.dim() == 0 else value.shape).numpy()
st_io.write(out, result)
print(f"wrote {len(result)} tensors for {parts} parts of {b} rows ({'ViT' if vit else 'ResNet'}, {dtype})")
