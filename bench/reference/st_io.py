"""Minimal safetensors reader/writer (json + numpy; Debian has no safetensors package).

read(path) -> (dict name -> numpy array, metadata dict); write(path, tensors, metadata).
BF16 is read as float32 (the stored 16 bits are the top half of a float32).
"""
import json
import struct

import numpy as np

_NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
       "I8": "i1", "U8": "u1", "BOOL": "?"}
_DTYPE = {np.dtype(v): k for k, v in _NP.items()}


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype, shape = info["dtype"], info["shape"]
        if dtype == "BF16":
            raw = np.frombuffer(body[begin:end], dtype="<u2").astype("<u4") << 16
            out[name] = raw.view("<f4").reshape(shape).copy()
        elif dtype in _NP:
            out[name] = np.frombuffer(body[begin:end], dtype=_NP[dtype]).reshape(shape).copy()
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {dtype}, which this reader does not know")
    return out, metadata


def write(path, tensors, metadata=None):
    header, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        if array.dtype not in _DTYPE:
            raise ValueError(f"{path}: tensor {name} has numpy dtype {array.dtype}, not storable here")
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _DTYPE[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in sorted(metadata.items())}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for chunk in chunks:
            f.write(chunk)
