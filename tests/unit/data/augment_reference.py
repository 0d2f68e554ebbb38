#!/opt/mgca-venv/bin/python
"""torchvision 0.14 reference for test_augment.cpp.

argv[1] is a folder holding input.raw (uint8 S x S) and cases.json, written
by the test. Each case names an operation and its parameters; the result of
the same torchvision functional op(s) on the float tensor is written to
<case>.out.raw (float32)."""
import json
import os
import sys

import numpy as np
import torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

folder = sys.argv[1]
cases = json.load(open(os.path.join(folder, "cases.json")))
size = cases["size"]
crop = cases["crop_size"]
image = np.fromfile(os.path.join(folder, "input.raw"), dtype=np.uint8).reshape(size, size)
unit = torch.from_numpy(image.copy()).float().div(255).unsqueeze(0)   # ToTensor: [1, S, S]
small = torch.from_numpy(np.fromfile(os.path.join(folder, "small.raw"), dtype=np.float32).reshape(crop, crop)).unsqueeze(0)


def convirt(p):
    t = F.resized_crop(unit, p["top"], p["left"], p["height"], p["width"], [crop, crop],
                       InterpolationMode.BILINEAR, antialias=True)
    if p["flip"]:
        t = F.hflip(t)
    t = F.affine(t, angle=p["angle"], translate=[p["tx"], p["ty"]], scale=p["scale"], shear=[0.0, 0.0],
                 interpolation=InterpolationMode.NEAREST, fill=[0.0])
    if p["brightness_first"]:
        t = F.adjust_contrast(F.adjust_brightness(t, p["brightness"]), p["contrast"])
    else:
        t = F.adjust_brightness(F.adjust_contrast(t, p["contrast"]), p["brightness"])
    t = F.gaussian_blur(t, [p["kernel"], p["kernel"]], [p["sigma"], p["sigma"]])
    return F.normalize(t, [0.5], [0.5])


for case in cases["cases"]:
    op, p = case["op"], case["params"]
    if op == "resized_crop":
        out = F.resized_crop(unit, p["top"], p["left"], p["height"], p["width"], [p["out_h"], p["out_w"]],
                             InterpolationMode.BILINEAR, antialias=True)
    elif op == "affine":
        out = F.affine(small, angle=p["angle"], translate=[p["tx"], p["ty"]], scale=p["scale"], shear=[0.0, 0.0],
                       interpolation=InterpolationMode.NEAREST, fill=[0.0])
    elif op == "brightness":
        out = F.adjust_brightness(small, p["factor"])
    elif op == "contrast":
        out = F.adjust_contrast(small, p["factor"])
    elif op == "blur":
        out = F.gaussian_blur(small, [p["kernel"], p["kernel"]], [p["sigma"], p["sigma"]])
    elif op == "hflip":
        out = F.hflip(small)
    elif op == "crop":  # MGCA: RandomCrop / CenterCrop, ToTensor, Normalize
        out = F.normalize(F.crop(unit, p["top"], p["left"], crop, crop), [0.5], [0.5])
    elif op == "center":
        out = F.normalize(F.center_crop(unit, [crop, crop]), [0.5], [0.5])
    elif op == "convirt":
        out = convirt(p)
    else:
        raise SystemExit(f"unknown op {op}")
    out.squeeze(0).numpy().astype(np.float32).tofile(os.path.join(folder, case["name"] + ".out.raw"))
print("ok")
