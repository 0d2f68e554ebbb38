#!/opt/mgca-venv/bin/python
"""Independent PyTorch reference of docs/contract.md §2 for test_reference.cpp.

  objectives_reference.py IN.safetensors OUT.safetensors

IN holds float64 inputs written by the C++ test (raw features, weights, pad
mask, raw prototypes) and, in its metadata, the settings. The reference
follows the official MGCA loss code's structure (one process, the whole batch
as an N×N score matrix, a Python loop over samples for the weight clipping,
torch.quantile, SwAV's non-distributed Sinkhorn with its constants) and
docs/contract.md §2's text for the "paper" variant; it writes every loss part and the
gradients w.r.t. the raw inputs and the normalized prototypes to OUT.
Only json, numpy and torch (the venv's torch) are used.
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

NP = {"F64": "<f8", "F32": "<f4", "I64": "<i8", "BOOL": "?"}


def read(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        arr = np.frombuffer(body[begin:end], dtype=NP[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out, meta


def write(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        arr = t.detach().to(torch.float64).contiguous().numpy().astype("<f8")
        raw = arr.tobytes()
        header[name] = {"dtype": "F64", "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def sinkhorn(Q, iters):
    """SwAV's non-distributed form, as the official code writes it."""
    Q = Q.clone()
    Q /= Q.sum()
    K, B = Q.shape
    r = torch.ones(K, dtype=Q.dtype) / K
    c = torch.ones(B, dtype=Q.dtype) / B
    for _ in range(iters):
        u = Q.sum(dim=1)
        Q *= (r / u).unsqueeze(1)
        Q *= (c / Q.sum(dim=0)).unsqueeze(0)
    return (Q / Q.sum(dim=0, keepdim=True)).t()


def clip_weights(w, low, high, nonzero_only):
    out = []
    for i in range(w.shape[0]):
        row = w[i].clone()
        if nonzero_only:
            nz = row != 0
            if nz.any():
                vals = row[nz]
                row[nz] = vals.clip(torch.quantile(vals, low), torch.quantile(vals, high))
        else:
            row = row.clip(torch.quantile(row, low), torch.quantile(row, high))
        out.append(row)
    w = torch.stack(out)
    s = w.sum(1, keepdim=True)
    return torch.where(s > 0, w / s.clamp_min(1e-300), torch.zeros_like(w))


def token_losses(sim, weights, bz, pad=None):
    """Weighted row/column cross-entropies of sim [b, n, n]; `pad` masks
    other pad entries out of both denominators (paper variant)."""
    n = sim.shape[1]
    rows, cols = sim, sim.transpose(1, 2)  # cols[b, j, l] = sim[b, l, j]
    if pad is not None:
        other = pad.unsqueeze(1) & ~torch.eye(n, dtype=torch.bool).unsqueeze(0)
        rows = rows.masked_fill(other, float("-inf"))
        cols = cols.masked_fill(other, float("-inf"))
    targets = torch.arange(n).repeat(bz)
    ce1 = F.cross_entropy(rows.reshape(bz * n, n), targets, reduction="none")
    ce2 = F.cross_entropy(cols.reshape(bz * n, n), targets, reduction="none")
    w = weights.reshape(-1)
    return torch.sum(ce1 * w) / bz, torch.sum(ce2 * w) / bz


def main(inp, outp):
    x, meta = read(inp)
    s = json.loads(meta["settings"])
    paper = s["variant"] == "paper"
    leaves = {k: x[k].clone().requires_grad_(True)
              for k in ("img_feat", "report_feat", "patch_feat", "word_feat")}
    proto = F.normalize(x["proto_raw"], dim=1).requires_grad_(True)
    img = F.normalize(leaves["img_feat"], dim=-1)
    rep = F.normalize(leaves["report_feat"], dim=-1)
    patch = F.normalize(leaves["patch_feat"], dim=-1)
    word = F.normalize(leaves["word_feat"], dim=-1)
    mask = x["word_mask"].bool()
    bz = img.shape[0]
    labels = torch.arange(bz)
    out = {}

    # ITA, the whole N×N matrix.
    scores = img.mm(rep.t()) / s["ita_temperature"]
    i2t, t2i = F.cross_entropy(scores, labels), F.cross_entropy(scores.t(), labels)
    out["ita_i2t"], out["ita_t2i"] = i2t, t2i
    out["ita"] = (i2t + t2i) / 2 if paper else i2t + t2i
    out["ita_acc1"] = (scores.argmax(1) == labels).double().mean() * 100
    out["ita_acc5"] = (scores.topk(5, 1).indices == labels[:, None]).any(1).double().mean() * 100

    # ConVIRT on the same embeddings.
    cs = img.mm(rep.t()) / s["convirt_temperature"]
    lam = s["convirt_lambda"]
    out["convirt"] = lam * F.cross_entropy(cs, labels) + (1 - lam) * F.cross_entropy(cs.t(), labels)

    # CTA.
    tau = s["local_temperature"]
    with torch.no_grad():
        ww = clip_weights(x["word_weight"], 0.1, 0.9, True)
        pw = (clip_weights(x["patch_weight"], 0.1, 0.9, False) if "patch_weight" in x
              else torch.ones(bz, patch.shape[1], dtype=torch.float64) / patch.shape[1])
    att = F.softmax(torch.bmm(word, patch.transpose(1, 2)) / tau, dim=-1)
    wout = F.normalize(torch.bmm(att, patch), dim=-1)
    wsim = torch.bmm(word, wout.transpose(1, 2)) / tau
    w1, w2 = token_losses(wsim, ww, bz, mask if paper else None)
    a = torch.bmm(patch, word.transpose(1, 2))
    a = a.masked_fill(mask.unsqueeze(1), float("-inf"))
    att2 = F.softmax(a / tau, dim=-1)
    pout = torch.bmm(att2, word)
    if paper or not s["patches_from_vit"]:
        pout = F.normalize(pout, dim=-1)
    psim = torch.bmm(patch, pout.transpose(1, 2)) / tau
    p1, p2 = token_losses(psim, pw, bz)
    out.update(word_row=w1, word_col=w2, word=(w1 + w2) / 2, patch_row=p1, patch_col=p2, patch=(p1 + p2) / 2)
    out["cta"] = (out["word"] + out["patch"]) / 2 if paper else out["word"] + out["patch"]

    # CPA.
    io, ro = img.mm(proto.t()), rep.mm(proto.t())
    with torch.no_grad():
        qi = sinkhorn(torch.exp(io / s["sinkhorn_epsilon"]).t(), s["sinkhorn_iterations"])
        qr = sinkhorn(torch.exp(ro / s["sinkhorn_epsilon"]).t(), s["sinkhorn_iterations"])
    pi = F.softmax(io / s["proto_temperature"], dim=1)
    pr = F.softmax(ro / s["proto_temperature"], dim=1)
    out["cpa_i2t"] = -torch.mean(torch.sum(qi * torch.log(pr), dim=1))
    out["cpa_t2i"] = -torch.mean(torch.sum(qr * torch.log(pi), dim=1))
    out["cpa"] = (out["cpa_i2t"] + out["cpa_t2i"]) / 2
    out["codes_img"], out["codes_report"] = qi, qr

    total = s["lambda_ita"] * out["ita"] + s["lambda_cta"] * out["cta"] + s["lambda_cpa"] * out["cpa"]
    out["total"] = total
    total.backward()
    for k, v in leaves.items():
        out["grad_" + k] = v.grad
    out["grad_proto"] = proto.grad
    # ConVIRT's gradients separately.
    for v in leaves.values():
        v.grad = None
    ci = F.normalize(leaves["img_feat"], dim=-1)
    cr = F.normalize(leaves["report_feat"], dim=-1)
    cs = ci.mm(cr.t()) / s["convirt_temperature"]
    (lam * F.cross_entropy(cs, labels) + (1 - lam) * F.cross_entropy(cs.t(), labels)).backward()
    out["convirt_grad_img_feat"] = leaves["img_feat"].grad
    out["convirt_grad_report_feat"] = leaves["report_feat"].grad
    write(outp, {k: (v if v.dim() else v.reshape(1)) for k, v in out.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
