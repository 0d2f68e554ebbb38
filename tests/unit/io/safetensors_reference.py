#!/opt/mgca-venv/bin/python
"""Independent safetensors reader/writer (json + numpy only) for the C++ tests.

  safetensors_reference.py check FILE   verify a file the C++ writer produced
  safetensors_reference.py write FILE   write a file for the C++ reader

Both sides build the same tensors from the formula in `expected()`, so each
checks the other's bytes exactly. Keep it in sync with test_safetensors.cpp.
"""
import json
import struct
import sys

import numpy as np

NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
      "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}
SHAPES = {"matrix": [2, 3], "empty": [0, 4], "scalar": []}
METADATA = {"format": "pt", "note": "h\u00e9llo \u2713 \"quoted\""}


def expected(dtype, shape):
    i = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    if dtype == "BOOL":
        return (i % 3 == 0).reshape(shape)
    if dtype == "U8":
        return ((i * 37 + 200) % 256).astype("u1").reshape(shape)
    v = (i * 5) % 11 - 5
    if dtype in ("F64", "F32", "F16"):
        return (v * 0.5).astype(NP[dtype]).reshape(shape)
    if dtype == "BF16":  # top 16 bits of the float32 value (exact for halves of small ints)
        return ((v * 0.5).astype("<f4").view("<u4") >> 16).astype("<u2").reshape(shape)
    return v.astype(NP[dtype]).reshape(shape)


def tensors():
    return [(f"{kind}_{dtype}", dtype, shape) for dtype in NP for kind, shape in SHAPES.items()]


def check(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0, f"header length {n} not 8-aligned"
    header = json.loads(data[8:8 + n].decode("utf-8"))
    assert data[8:8 + n].decode().rstrip(" ").endswith("}"), "header padding is not spaces"
    assert header.pop("__metadata__") == METADATA, "metadata differs"
    body, offset = data[8 + n:], 0
    names = list(header)
    assert names == [t[0] for t in tensors()], f"tensor order {names}"
    for name, dtype, shape in tensors():
        info = header[name]
        assert info["dtype"] == dtype and info["shape"] == shape, f"{name}: {info}"
        begin, end = info["data_offsets"]
        assert begin == offset, f"{name}: begins at {begin}, expected {offset}"
        got = np.frombuffer(body[begin:end], dtype=NP[dtype]).reshape(shape)
        assert np.array_equal(got, expected(dtype, shape)), f"{name}: values differ: {got}"
        offset = end
    assert offset == len(body), "trailing bytes"
    print(f"ok: {len(names)} tensors")


def write(path):
    header, chunks, offset = {"__metadata__": METADATA}, [], 0
    for name, dtype, shape in tensors():
        raw = expected(dtype, shape).tobytes()
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


if __name__ == "__main__":
    {"check": check, "write": write}[sys.argv[1]](sys.argv[2])
