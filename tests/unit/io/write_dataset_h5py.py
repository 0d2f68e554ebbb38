#!/opt/mgca-venv/bin/python
"""Writes a one-shard mgca dataset with h5py, following docs/data-format.md but
with gzip compression and several images per chunk (a layout our writer never
produces), so the reader's general HDF5 path is tested."""
import hashlib
import json
import os
import sys

import h5py
import numpy as np

folder = sys.argv[1]
n, size = 6, 10
images = np.zeros((n, size, size), dtype=np.uint8)
for i in range(n):
    images[i] = (i * 7 + np.arange(size)[:, None] * 10 + np.arange(size)[None, :]) % 256
path = os.path.join(folder, "py-00000.h5")
string = h5py.string_dtype("utf-8")
with h5py.File(path, "w") as h5:
    h5.create_dataset("images", data=images, chunks=(2, size, size), compression="gzip", fletcher32=True)
    h5.create_dataset("ids", data=[f"py-{i}" for i in range(n)], dtype=string)
    h5.create_dataset("reports", data=[f"sentence one {i}\nsentence two" for i in range(n)], dtype=string)
    h5.create_dataset("labels", data=np.array([[i % 2] for i in range(n)], dtype=np.float32))
    h5.attrs["label_names"] = np.array(["Odd"], dtype=object)
    h5.attrs.create("label_names", ["Odd"], dtype=string)
    h5.attrs["format_version"] = np.int64(1)
    h5.attrs["image_size"] = np.int64(size)
with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
manifest = {"format": "mgca-dataset", "format_version": 1, "source": "h5py", "split": "test",
            "image_size": size, "num_samples": n, "label_names": ["Odd"],
            "shards": [{"file": "py-00000.h5", "count": n, "bytes": os.path.getsize(path), "sha256": digest}],
            "info": {}}
with open(os.path.join(folder, "dataset.json"), "w") as f:
    json.dump(manifest, f, indent=2)
