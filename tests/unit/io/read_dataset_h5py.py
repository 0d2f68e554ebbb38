#!/opt/mgca-venv/bin/python
"""Reads an mgca dataset folder with h5py exactly as docs/data-format.md shows,
and prints what it found as JSON (test_dataset_file.cpp compares it)."""
import hashlib
import json
import math
import os
import sys

import h5py
import numpy as np

folder = sys.argv[1]
with open(os.path.join(folder, "dataset.json")) as f:
    manifest = json.load(f)
assert manifest["format"] == "mgca-dataset" and manifest["format_version"] == 1

ids, reports, labels, image_sha256 = [], [], [], []
mask_sha256, boxes = [], []
checksums_ok = True
for shard in manifest["shards"]:
    path = os.path.join(folder, shard["file"])
    with open(path, "rb") as f:
        checksums_ok &= hashlib.sha256(f.read()).hexdigest() == shard["sha256"]
    with h5py.File(path, "r") as h5:
        images = h5["images"]                       # uint8 [n, S, S]
        assert images.dtype == np.uint8 and images.shape[1:] == (manifest["image_size"],) * 2
        assert images.shape[0] == shard["count"]
        ids += list(h5["ids"].asstr()[:])            # variable-length UTF-8 strings
        reports += list(h5["reports"].asstr()[:])   # sentences joined by "\n"
        for i in range(images.shape[0]):
            image_sha256.append(hashlib.sha256(images[i].tobytes()).hexdigest())
        if "labels" in h5:                           # float32 [n, L], NaN = missing
            names = list(h5.attrs["label_names"])
            assert names == manifest["label_names"], (names, manifest["label_names"])
            labels += [[None if math.isnan(v) else float(v) for v in row] for row in h5["labels"][:]]
        if "masks" in h5:                            # uint8 [n, S, S], 0/1
            assert "masks" in manifest["annotations"]
            masks = h5["masks"]
            assert masks.dtype == np.uint8 and masks.shape == images.shape
            mask_sha256 += [hashlib.sha256(masks[i].tobytes()).hexdigest() for i in range(masks.shape[0])]
        if "boxes" in h5:                            # float32 [M, 4] + int64 offsets [n + 1]
            assert "boxes" in manifest["annotations"]
            rows, offsets = h5["boxes"][:], h5["box_offsets"][:]
            assert rows.dtype == np.float32 and offsets.dtype == np.int64
            boxes += [rows[offsets[i]:offsets[i + 1]].tolist() for i in range(images.shape[0])]
        assert h5.attrs["image_size"] == manifest["image_size"]

print(json.dumps({"ids": ids, "reports": reports, "labels": labels, "image_sha256": image_sha256,
                  "label_names": manifest["label_names"], "image_size": manifest["image_size"],
                  "mask_sha256": mask_sha256, "boxes": boxes, "checksums_ok": checksums_ok}))
