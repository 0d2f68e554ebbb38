#!/usr/bin/python3
"""The evaluation transform with PyTorch/torchvision: argv = in.raw S n crop out.raw.

in.raw: n·S·S uint8; out.raw: n·crop·crop float32 (little-endian).
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T


def main():
    src, s, n, crop, dst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    x = torch.from_numpy(np.fromfile(src, dtype=np.uint8).reshape(n, 1, s, s).copy()).float() / 255.0
    resize = round(crop * 256 / 224)
    if s > resize:
        x = F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False, antialias=True)
    elif s < crop:
        x = F.interpolate(x, size=(crop, crop), mode="bilinear", align_corners=False, antialias=False)
    x = T.CenterCrop(crop)(x)
    x = T.Normalize((0.5,), (0.5,))(x)
    x.numpy().astype("<f4").tofile(dst)


if __name__ == "__main__":
    main()
