#!/opt/mgca-venv/bin/python
"""The MGCA objective as the official code computes it, timed in PyTorch.

  official_objective.py --b B [--d 128] [--reps 5] [--threads 1]

One process (W = 1), ViT branch, the official loss path's structure: the
B×B ITA matrix, a Python loop over samples with torch.quantile for the word
and patch weights, F.cross_entropy over rearranged similarity matrices, and
SwAV's non-distributed Sinkhorn (5 reductions per modality). The patch
weights are given as [B, P] (the head-mean of the [CLS] attention), as
bench_objectives gives them to ours. Prints one JSON line with the median
forward+backward wall and CPU time. the venv's torch 2.11 on CPU (scripts/install-deps).
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

S, P, K = 111, 196, 500
T_ITA, T_LOCAL, T_PROTO, EPS, ITERS = 0.07, 0.1, 0.2, 0.05, 3


def sinkhorn(Q, iters):
    with torch.no_grad():
        Q /= torch.sum(Q)
        k, b = Q.shape
        r, c = torch.ones(k) / k, torch.ones(b) / b
        for _ in range(iters):
            u = torch.sum(Q, dim=1)
            Q *= (r / u).unsqueeze(1)
            Q *= (c / torch.sum(Q, dim=0)).unsqueeze(0)
        return (Q / torch.sum(Q, dim=0, keepdim=True)).t()


def clipped(weights, nonzero_only):
    out = []
    for i in range(weights.shape[0]):  # the official per-sample loop
        w = weights[i]
        if nonzero_only:
            nz = w.nonzero().squeeze()
            w[nz] = w[nz].clip(torch.quantile(w[nz], 0.1), torch.quantile(w[nz], 0.9))
        else:
            w = w.clip(torch.quantile(w, 0.1), torch.quantile(w, 0.9))
        out.append(w.clone())
    out = torch.stack(out)
    return out / out.sum(dim=1, keepdim=True)


def token_loss(sim, weights, bz):
    n = sim.size(1)
    targets = torch.arange(n).repeat(bz)
    rows = sim.reshape(bz * n, n)
    cols = sim.transpose(1, 2).reshape(bz * n, n)
    l1 = torch.sum(F.cross_entropy(rows, targets, reduction="none") * weights.view(-1)) / bz
    l2 = torch.sum(F.cross_entropy(cols, targets, reduction="none") * weights.view(-1)) / bz
    return (l1 + l2) / 2


def objective(img, rep, patch, word, word_attn, mask, patch_attn, proto):
    img, rep = F.normalize(img, dim=-1), F.normalize(rep, dim=-1)
    patch, word = F.normalize(patch, dim=-1), F.normalize(word, dim=-1)
    bz = img.size(0)
    labels = torch.arange(bz)
    scores = img.mm(rep.t()) / T_ITA
    loss_ita = F.cross_entropy(scores, labels) + F.cross_entropy(scores.t(), labels)

    att = F.softmax(torch.bmm(word, patch.permute(0, 2, 1)) / T_LOCAL, dim=-1)
    wout = F.normalize(torch.bmm(att, patch), dim=-1)
    wsim = torch.bmm(word, wout.permute(0, 2, 1)) / T_LOCAL
    with torch.no_grad():
        ww = clipped(word_attn.clone(), True)
    loss_word = token_loss(wsim, ww, bz)
    a = torch.bmm(patch, word.permute(0, 2, 1))
    a[mask.unsqueeze(1).repeat(1, patch.size(1), 1)] = float("-inf")
    pout = torch.bmm(F.softmax(a / T_LOCAL, dim=-1), word)  # ViT: not normalized
    with torch.no_grad():
        pw = clipped(patch_attn.clone(), False)
    psim = torch.bmm(patch, pout.permute(0, 2, 1)) / T_LOCAL
    loss_patch = token_loss(psim, pw, bz)

    io, ro = img.mm(proto.t()), rep.mm(proto.t())
    with torch.no_grad():
        qi = sinkhorn(torch.exp(io / EPS).t(), ITERS)
        qr = sinkhorn(torch.exp(ro / EPS).t(), ITERS)
    loss_proto = -(torch.mean(torch.sum(qi * torch.log(F.softmax(ro / T_PROTO, dim=1)), dim=1)) +
                   torch.mean(torch.sum(qr * torch.log(F.softmax(io / T_PROTO, dim=1)), dim=1))) / 2
    return loss_ita + loss_word + loss_patch + loss_proto


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--b", type=int, required=True)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    b, d = a.b, a.d
    leaves = [torch.randn(*s, requires_grad=True) for s in ((b, d), (b, d), (b, P, d), (b, S, d))]
    proto = F.normalize(torch.randn(K, d), dim=1).requires_grad_(True)
    word_attn = torch.rand(b, S)
    mask = torch.zeros(b, S, dtype=torch.bool)
    for i in range(b):
        n = 20 + (i * 37) % (S - 20)
        mask[i, n:] = True
        word_attn[i, n:] = 0
    patch_attn = torch.rand(b, P)
    times, cpu = [], []
    for r in range(a.reps + 1):  # the first is a warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        loss = objective(*leaves, word_attn, mask, patch_attn, proto)
        loss.backward()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        for t in leaves + [proto]:
            t.grad = None
    times, cpu = sorted(times[1:]), sorted(cpu[1:])
    print(json.dumps({"b": b, "d": d, "threads": a.threads, "fwd_bwd_ms": times[len(times) // 2],
                      "fwd_bwd_cpu_ms": cpu[len(cpu) // 2],
                      "fwd_bwd_min_ms": times[0], "torch": torch.__version__}))


if __name__ == "__main__":
    main()
