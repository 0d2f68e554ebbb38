#!/opt/mgca-venv/bin/python
"""The real `safetensors` package (Hugging Face) against our reader and writer.

  safetensors_package.py check FILE   read a file the C++ writer produced
  safetensors_package.py write FILE   write a file with safetensors.torch.save_file

The tensors are safetensors_reference.py's (every dtype we write, each as a
matrix, an empty and a 0-d tensor, values from expected()) and its metadata.
"check" reads with safe_open(framework="pt") and with load_file, and compares
names, dtypes, shapes, values (bit for bit) and metadata.
"""
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from safetensors_reference import METADATA, expected, tensors

TORCH = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
         "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
         "BOOL": torch.bool}


def as_torch(dtype, shape):
    a = expected(dtype, shape)
    if dtype == "BF16":  # expected() gives the raw bits
        return torch.from_numpy(a.astype(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.array(a, order="C"))  # keeps 0-d shapes (ascontiguousarray does not)


def same_bits(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == torch.bfloat16:
        a, b = a.view(torch.int16), b.view(torch.int16)
    return torch.equal(a, b)


def check(path):
    with safe_open(path, framework="pt") as f:
        assert f.metadata() == METADATA, f"metadata {f.metadata()}"
        names = sorted(f.keys())
        assert names == sorted(t[0] for t in tensors()), f"names {names}"
        for name, dtype, shape in tensors():
            got = f.get_tensor(name)
            assert got.dtype == TORCH[dtype] and list(got.shape) == shape, f"{name}: {got.dtype} {list(got.shape)}"
            assert same_bits(got, as_torch(dtype, shape)), f"{name}: values differ: {got}"
    loaded = load_file(path)
    assert all(same_bits(loaded[name], as_torch(dtype, shape)) for name, dtype, shape in tensors())
    print(f"ok: {len(names)} tensors")


def write(path):
    save_file({name: as_torch(dtype, shape) for name, dtype, shape in tensors()}, path, metadata=METADATA)


if __name__ == "__main__":
    {"check": check, "write": write}[sys.argv[1]](sys.argv[2])
