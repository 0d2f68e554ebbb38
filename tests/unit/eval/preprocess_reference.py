#!/opt/mgca-venv/bin/python
"""MGCA's test transform with torchvision: argv = in.raw S n crop out.raw.

in.raw: n·S·S uint8; out.raw: n·crop·crop float32 (little-endian) of
CenterCrop(crop) + Normalize(0.5, 0.5) on ToTensor's [0, 1] values.
"""
import sys

import numpy as np
import torch
import torchvision.transforms as T


def main():
    src, s, n, crop, dst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    x = torch.from_numpy(np.fromfile(src, dtype=np.uint8).reshape(n, 1, s, s).copy()).float() / 255.0
    x = T.Normalize((0.5,), (0.5,))(T.CenterCrop(crop)(x))
    x.numpy().astype("<f4").tofile(dst)


if __name__ == "__main__":
    main()
