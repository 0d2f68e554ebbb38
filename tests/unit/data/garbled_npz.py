"""Writes MedMNIST-style .npz archives whose .npy members lie (the inputs the
fuzz target fuzz/npz.cpp found wrong handling for) into the folder argv[1]."""
import sys
import zipfile

import numpy as np


def npy(dtype, shape, data=b"", header_length=None):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype, repr(tuple(shape)))
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    if header_length is not None:
        header = header.ljust(header_length - 1) + "\n"
    version, length_bytes = (b"\x01\x00", 2) if len(header) < 65536 else (b"\x02\x00", 4)
    return b"\x93NUMPY" + version + len(header).to_bytes(length_bytes, "little") + header.encode() + data


def npz(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, member in members.items():
            archive.writestr(name + ".npy", member)


out = sys.argv[1]
images = npy("|u1", (2, 2, 2), bytes(range(8)))
# labels whose shape claims 200 million rows while the member holds 14 bytes
npz(f"{out}/huge-shape.npz", {"train_images": images, "train_labels": npy("|u1", (200000000, 14), bytes(14))})
# class-index columns with a negative index, a NaN and a fraction
npz(f"{out}/negative-class.npz",
    {"train_images": images, "train_labels": npy("<i8", (2, 1), np.array([5, -3], np.int64).tobytes())})
npz(f"{out}/nan-class.npz", {"train_images": images, "train_labels": npy("<f8", (2, 1), np.array([5, np.nan]).tobytes())})
npz(f"{out}/fraction-class.npz", {"train_images": images, "train_labels": npy("<f8", (2, 1), np.array([5, 2.5]).tobytes())})
# 10^11 images of one pixel with zero-width labels: nothing behind either
npz(f"{out}/zero-width.npz",
    {"train_images": npy("|u1", (100000000000, 1, 1)), "train_labels": npy("|u1", (100000000000, 0))})
# an .npy header of 70000 bytes (numpy itself refuses over 10000)
npz(f"{out}/long-header.npz",
    {"train_images": npy("|u1", (2, 2, 2), bytes(range(8)), header_length=70000), "train_labels": npy("|u1", (2, 1), b"\x00\x01")})
