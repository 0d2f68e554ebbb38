#!/opt/mgca-venv/bin/python
"""MGCA's MixedLoss(alpha=10) (mgca/utils/segmentation_loss.py), reproduced
operation for operation, on logits/targets read from a safetensors file
(argv[1]); prints the loss and d loss / d logits as JSON."""
import json
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

t = load_file(sys.argv[1])
x = t["logits"].double().requires_grad_(True)
y = t["targets"].double()
max_val = (-x).clamp(min=0)
loss = x - x * y + max_val + ((-max_val).exp() + (-x - max_val).exp()).log()
invprobs = F.logsigmoid(-x * (y * 2.0 - 1.0))
focal = ((invprobs * 2.0).exp() * loss).mean()
p = torch.sigmoid(x).view(-1)
dice = (2.0 * (p * y.view(-1)).sum() + 1.0) / (p.sum() + y.view(-1).sum() + 1.0)
total = (10.0 * focal - torch.log(dice)).mean()
total.backward()
print(json.dumps({"loss": total.item(), "grad": x.grad.reshape(-1).tolist()}))
