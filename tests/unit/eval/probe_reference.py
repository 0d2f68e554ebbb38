#!/opt/mgca-venv/bin/python
"""Replays a linear-probe run with PyTorch's own AdamW and losses.

Input JSON (argv[1]): x_train, y_train (multi-label: rows with null for
missing; multi-class: class indices), x_val, y_val, kind, options, batches
(the row indices of every step, as the C++ probe drew them) and
steps_per_epoch. Output JSON (argv[2]): weight, bias (the best-validation
weights), val_loss per epoch, best_epoch.
"""
import json
import sys

import torch
import torch.nn.functional as F


def targets(values, kind):
    if kind == "multilabel":
        y = torch.tensor([[float("nan") if v is None else v for v in row] for row in values])
        return torch.nan_to_num(y, 0.0), (~torch.isnan(y)).float()
    return torch.tensor(values, dtype=torch.int64), None


def loss_of(logits, y, mask, kind):
    if kind == "multilabel":
        per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        return (per * mask).sum() / mask.sum().clamp_min(1.0)
    return F.cross_entropy(logits, y)


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    kind, opt = job["kind"], job["options"]
    x_train = torch.tensor(job["x_train"], dtype=torch.float32)
    x_val = torch.tensor(job["x_val"], dtype=torch.float32)
    y_train, m_train = targets(job["y_train"], kind)
    y_val, m_val = targets(job["y_val"], kind)
    classes = job["classes"]

    mean = x_train.mean(0)
    std = x_train.std(0, unbiased=False)
    scale = torch.where(std > 1e-6 * (1.0 + mean.abs()), 1.0 / std, torch.ones_like(std))
    xs_train = (x_train - mean) * scale
    xs_val = (x_val - mean) * scale

    weight = torch.zeros(classes, x_train.shape[1], requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.AdamW([weight, bias], lr=opt["lr"], betas=(0.9, 0.999),
                                  weight_decay=opt["weight_decay"])
    batches = job["batches"]
    per_epoch = job["steps_per_epoch"]
    best, best_epoch, since = float("inf"), 0, 0
    best_w, best_b = weight.detach().clone(), bias.detach().clone()
    val_losses = []
    step = 0
    for epoch in range(opt["max_epochs"]):
        for _ in range(per_epoch):
            idx = torch.tensor(batches[step], dtype=torch.int64)
            step += 1
            logits = xs_train[idx] @ weight.t() + bias
            loss = loss_of(logits, y_train[idx], None if m_train is None else m_train[idx], kind)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val = loss_of(xs_val @ weight.t() + bias, y_val, m_val, kind).item()
        val_losses.append(val)
        if val < best:
            best, best_epoch, since = val, epoch, 0
            best_w, best_b = weight.detach().clone(), bias.detach().clone()
        else:
            since += 1
            if since >= opt["patience"]:
                break
    assert step == len(batches), (step, len(batches))
    with open(sys.argv[2], "w") as f:
        json.dump({"weight": best_w.tolist(), "bias": best_b.tolist(), "val_loss": val_losses,
                   "best_epoch": best_epoch}, f)


if __name__ == "__main__":
    main()
