#!/opt/mgca-venv/bin/python
"""The encoders of bench/encoders in plain PyTorch (the venv's torch 2.11 on CPU).

Same models, inputs and timing rules as bench_encoders: per-sample median
time of a forward (eval, no autograd) and of a forward + backward (train
mode, loss = sum of the outputs, gradients set to None before each step).
ViT and BERT are the official MGCA structure (mgca_official.py: BLIP's ViT
keeping the last block's attention map, a Hugging Face BertModel with the
last layer's attentions); ResNet-50 is torchvision's, run as MGCA's
resnet_forward (3-channel input, bilinear resize to 299 for resnet50_299).
The official pipeline feeds RGB: the gray image replicated to 3 channels.

    /opt/mgca-venv/bin/python bench/reference/encoders.py --threads 2 --reps 5 --json ref.json
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402

from mgca_official import BertModel, VisionTransformer  # noqa: E402


def time_it(warmup, reps, fn):
    """Median wall and process-CPU seconds of `reps` runs, and the fastest wall time."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(reps):
        c, t = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu), min(wall)


def timing(prefix, t, batch):
    return {f"{prefix}_ms_per_sample": 1e3 * t[0] / batch, f"{prefix}_min_ms_per_sample": 1e3 * t[2] / batch,
            f"{prefix}_cpu_ms_per_sample": 1e3 * t[1] / batch}


def drop_grads(m):
    for p in m.parameters():
        p.grad = None


def text_batch(b, l):
    g = torch.Generator().manual_seed(1234)
    ids = torch.zeros(b, l, dtype=torch.long)
    mask = torch.zeros(b, l, dtype=torch.long)
    for i in range(b):
        n = 50 + (i * 37) % (l - 49)
        ids[i, :n] = torch.randint(1000, 28996, (n,), generator=g)
        ids[i, 0], ids[i, n - 1] = 101, 102
        mask[i, :n] = 1
    return ids, mask


class ResNetMgca(nn.Module):
    """torchvision resnet50 run as MGCA's ImageEncoder.resnet_forward."""

    def __init__(self, resize):
        super().__init__()
        self.model = torchvision.models.resnet50()
        self.resize = resize

    def forward(self, x):
        if self.resize:
            x = nn.Upsample(size=(self.resize, self.resize), mode="bilinear", align_corners=True)(x)
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer3(m.layer2(m.layer1(x)))
        local = x.flatten(2).transpose(1, 2)
        x = m.layer4(x)
        return torch.flatten(m.avgpool(x), 1), local


class ViTMgca(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = VisionTransformer(224, 16, 768, 12, 12, 3072)

    def forward(self, x):
        t = self.model(x, register_blk=11)  # MGCA keeps the last block's attention map
        return t[:, 0], t[:, 1:]


def run_image(name, model, size, args):
    torch.manual_seed(0)
    gray = torch.rand(args.image_batch, 1, size, size)
    rgb = gray.expand(args.image_batch, 3, size, size).contiguous()
    model.eval()

    def fwd():
        with torch.no_grad():
            model(rgb)

    def train():
        drop_grads(model)
        g, l = model(rgb)
        (g.sum() + l.sum()).backward()

    f = time_it(args.warmup, args.reps, fwd)
    model.train()
    t = time_it(args.warmup, args.reps, train)
    return {"name": name, "batch": args.image_batch, **timing("forward", f, args.image_batch),
            **timing("train", t, args.image_batch)}


def run_text(name, layers, args):
    model = BertModel(28996, 768, layers, 12, 3072, 512, 0.1)
    ids, mask = text_batch(args.text_batch, args.tokens)
    types = torch.zeros_like(ids)
    model.eval()

    def fwd():
        with torch.no_grad():
            model(ids, mask, types)

    def train():
        drop_grads(model)
        model(ids, mask, types)[0].sum().backward()

    f = time_it(args.warmup, args.reps, fwd)
    model.train()
    t = time_it(args.warmup, args.reps, train)
    return {"name": name, "batch": args.text_batch, **timing("forward", f, args.text_batch),
            **timing("train", t, args.text_batch)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["vit_b16", "resnet50_224", "resnet50_299", "bert6", "bert12"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--image-batch", type=int, default=8)
    p.add_argument("--text-batch", type=int, default=16)
    p.add_argument("--tokens", type=int, default=112)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for name in args.models:
        if name == "vit_b16":
            row = run_image(name, ViTMgca(), 224, args)
        elif name in ("resnet50_224", "resnet50_299"):
            row = run_image(name, ResNetMgca(299 if name == "resnet50_299" else 0), 224, args)
        elif name in ("bert6", "bert12"):
            row = run_text(name, 6 if name == "bert6" else 12, args)
        else:
            raise SystemExit(f"unknown model {name}")
        print(json.dumps(row), file=sys.stderr)
        results.append(row)
    out = {"implementation": "pytorch", "torch": torch.__version__, "threads": args.threads, "reps": args.reps,
           "results": results}
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
