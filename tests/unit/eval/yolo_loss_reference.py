#!/opt/mgca-venv/bin/python
"""MGCA's YOLOLoss (mgca/utils/yolo_loss.py) with targets, summed over the
three scales as SSLDetector.shared_step does, reimplemented step by step
(per-box loop, nn.BCELoss / nn.MSELoss) on head outputs and boxes read from a
safetensors file (argv[1]: out0, out1, out2 [b, 18, h, w] float64; boxes
[b, 10, 5] rows (class, cx, cy, w, h) / image size, zero rows = none;
input_size [1]). Prints the loss and d loss / d outputs as JSON."""
import json
import math
import sys

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file

t = load_file(sys.argv[1])
size = int(t["input_size"][0])
labels = t["boxes"].double()
outs = [t[f"out{k}"].double().requires_grad_(True) for k in range(3)]
anchors_all = (torch.tensor([[[116, 90], [156, 198], [373, 326]], [[30, 61], [62, 45], [59, 119]],
                             [[10, 13], [16, 30], [33, 23]]]) * size / 416).tolist()


def iou_plus_one(b1, b2):  # bbox_iou(x1y1x2y2=True) of yolo_loss.py
    ix = torch.clamp(torch.min(b1[:, 2], b2[:, 2]) - torch.max(b1[:, 0], b2[:, 0]) + 1, min=0)
    iy = torch.clamp(torch.min(b1[:, 3], b2[:, 3]) - torch.max(b1[:, 1], b2[:, 1]) + 1, min=0)
    inter = ix * iy
    a1 = (b1[:, 2] - b1[:, 0] + 1) * (b1[:, 3] - b1[:, 1] + 1)
    a2 = (b2[:, 2] - b2[:, 0] + 1) * (b2[:, 3] - b2[:, 1] + 1)
    return inter / (a1 + a2 - inter + 1e-16)


total = 0
for out, anchors in zip(outs, anchors_all):
    bs, _, h, w = out.shape
    scaled = [(aw / (size / w), ah / (size / h)) for aw, ah in anchors]
    p = out.view(bs, 3, 6, h, w).permute(0, 1, 3, 4, 2).contiguous()
    x, y = torch.sigmoid(p[..., 0]), torch.sigmoid(p[..., 1])
    pw, ph = p[..., 2], p[..., 3]
    conf, cls = torch.sigmoid(p[..., 4]), torch.sigmoid(p[..., 5:])
    shape = (bs, 3, h, w)
    mask, noobj = torch.zeros(shape, dtype=torch.float64), torch.ones(shape, dtype=torch.float64)
    tx, ty, tw, th = (torch.zeros(shape, dtype=torch.float64) for _ in range(4))
    tcls = torch.zeros(shape + (1,), dtype=torch.float64)
    for b in range(bs):
        for r in range(labels.shape[1]):
            if labels[b, r].sum() == 0:
                continue
            gx, gy = labels[b, r, 1].item() * w, labels[b, r, 2].item() * h
            gw, gh = labels[b, r, 3].item() * w, labels[b, r, 4].item() * h
            gi, gj = int(gx), int(gy)
            gt = torch.tensor([[0, 0, gw, gh]], dtype=torch.float64)
            anchor_boxes = torch.tensor(np.concatenate((np.zeros((3, 2)), np.array(scaled)), 1))
            ious = iou_plus_one(gt, anchor_boxes)
            noobj[b, ious > 0.5, gj, gi] = 0
            best = int(np.argmax(ious.numpy()))
            mask[b, best, gj, gi] = 1
            tx[b, best, gj, gi], ty[b, best, gj, gi] = gx - gi, gy - gj
            tw[b, best, gj, gi] = math.log(gw / scaled[best][0] + 1e-16)
            th[b, best, gj, gi] = math.log(gh / scaled[best][1] + 1e-16)
            tcls[b, best, gj, gi, 0] = 1
    bce, mse = nn.BCELoss(), nn.MSELoss()
    loss = 2.5 * (bce(x * mask, tx * mask) + bce(y * mask, ty * mask)) + \
        2.5 * (mse(pw * mask, tw * mask) + mse(ph * mask, th * mask)) + \
        bce(conf * mask, mask) + 0.5 * bce(conf * noobj, noobj * 0.0) + \
        bce(cls * mask.unsqueeze(-1), tcls * mask.unsqueeze(-1))
    total = total + loss
total.backward()
print(json.dumps({"loss": total.item(), "grads": [o.grad.reshape(-1).tolist() for o in outs]}))
