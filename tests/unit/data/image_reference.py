#!/opt/mgca-venv/bin/python
"""Reference images for test_image.cpp, written into the folder argv[1].

* PNG files of every layout the decoder handles, written by a small PNG encoder
  below (zlib + struct: 1/8/16-bit gray, gray+alpha, RGB, RGBA, palette, sBIT,
  Adam7 interlace), each with the 8-bit gray image the decoder must produce
  (<name>.expected.raw), computed here with numpy from the documented rules.
* The real sample images decoded by PIL (<name>.pil.raw): gray PNG as is, RGB
  PNG through PIL's convert("L"), JPEG decoded straight to gray (draft("L")).
* Resize references (<name>.resized.raw): exact area averaging when
  shrinking, OpenCV's INTER_AREA rule when enlarging, then MGCA's padding.
"""
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

out = sys.argv[1]
samples = sys.argv[2]


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_rows(array, bit_depth):
    """array: [h, w, c] integers -> list of raw scanline bytes (no filter byte)."""
    h, w, c = array.shape
    rows = []
    for y in range(h):
        if bit_depth == 16:
            rows.append(array[y].astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(array[y].astype(np.uint8).tobytes())
        else:  # 1, 2, 4 bits, one channel
            bits = "".join(format(int(v), f"0{bit_depth}b") for v in array[y, :, 0])
            bits += "0" * (-len(bits) % 8)
            rows.append(int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b"")
    return rows


def write_png(path, array, bit_depth, color_type, palette=None, sbit=None, interlace=False):
    h, w = array.shape[:2]
    if array.ndim == 2:
        array = array[:, :, None]
    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    raw = b""
    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        for x0, y0, dx, dy in passes:
            sub = array[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            raw += b"".join(b"\x00" + row for row in pack_rows(sub, bit_depth))
    else:
        raw = b"".join(b"\x00" + row for row in pack_rows(array, bit_depth))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    if sbit is not None:
        data += chunk(b"sBIT", bytes(sbit))
    if palette is not None:
        data += chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def luminance(r, g, b):
    r, g, b = (np.asarray(v, dtype=np.int64) for v in (r, g, b))
    return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).astype(np.uint8)


def scale16(v, bits):
    m = (1 << bits) - 1
    v = np.minimum(np.asarray(v, dtype=np.int64), m)
    return ((v * 255 + m // 2) // m).astype(np.uint8)


rng = np.random.default_rng(5)
cases = {}
h, w = 19, 23  # odd sizes catch stride mistakes

g8 = rng.integers(0, 256, (h, w))
cases["gray8"] = (g8, 8, 0, {}, g8)
g12 = rng.integers(0, 4096, (h, w))
cases["gray16_sbit12"] = (g12, 16, 0, {"sbit": [12]}, scale16(g12, 12))
g16 = rng.integers(0, 65536, (h, w))
cases["gray16"] = (g16, 16, 0, {}, scale16(g16, 16))
g1 = rng.integers(0, 2, (h, w))
cases["gray1"] = (g1, 1, 0, {}, (g1 * 255).astype(np.uint8))
g4 = rng.integers(0, 16, (h, w))
cases["gray4"] = (g4, 4, 0, {}, (g4 * 17).astype(np.uint8))
ga = np.stack([g8, rng.integers(0, 256, (h, w))], -1)
cases["gray_alpha8"] = (ga, 8, 4, {}, g8)
rgb = rng.integers(0, 256, (h, w, 3))
cases["rgb8"] = (rgb, 8, 2, {}, luminance(rgb[..., 0], rgb[..., 1], rgb[..., 2]))
rgba = rng.integers(0, 256, (h, w, 4))
cases["rgba8"] = (rgba, 8, 6, {}, luminance(rgba[..., 0], rgba[..., 1], rgba[..., 2]))
rgb16 = rng.integers(0, 65536, (h, w, 3))
cases["rgb16"] = (rgb16, 16, 2, {}, luminance(scale16(rgb16[..., 0], 16), scale16(rgb16[..., 1], 16), scale16(rgb16[..., 2], 16)))
palette = rng.integers(0, 256, (16, 3))
index = rng.integers(0, 16, (h, w))
cases["palette8"] = (index, 8, 3, {"palette": palette},
                     luminance(palette[index, 0], palette[index, 1], palette[index, 2]))
cases["gray8_interlaced"] = (g8, 8, 0, {"interlace": True}, g8)

manifest = {}
for name, (array, bit_depth, color_type, extra, expected) in cases.items():
    path = os.path.join(out, name + ".png")
    write_png(path, array, bit_depth, color_type, **extra)
    expected.astype(np.uint8).tofile(os.path.join(out, name + ".expected.raw"))
    manifest[name] = {"width": w, "height": h}


# Real samples as PIL decodes them.
def pil_gray(path):
    im = Image.open(path)
    if im.format == "JPEG":
        im.draft("L", im.size)  # libjpeg decodes straight to luminance
    return np.asarray(im.convert("L"))


def area_weights(n_in, n_out):
    """[n_out, n_in] matrix: exact area averaging (shrinking) or OpenCV's
    INTER_AREA enlarging rule."""
    m = np.zeros((n_out, n_in))
    scale = n_in / n_out
    if n_out <= n_in:
        for o in range(n_out):
            b, e = o * scale, (o + 1) * scale
            for i in range(int(np.floor(b)), int(np.ceil(e))):
                if i < n_in:
                    m[o, i] = max(0.0, min(e, i + 1) - max(b, i)) / scale
    else:
        inv = n_out / n_in
        for o in range(n_out):
            i = int(np.floor(o * scale))
            f = (o + 1) - (i + 1) * inv
            f = 0.0 if f <= 0 else f - np.floor(f)
            if i >= n_in - 1:
                i, f = n_in - 1, 0.0
            m[o, i] += 1 - f
            if f > 0:
                m[o, i + 1] += f
    return m


def mgca_resize(gray, size):
    h, w = gray.shape
    if h >= w:
        nh, nw = size, int(w * (size / h))
    else:
        nh, nw = int(h * (size / w)), size
    resized = area_weights(h, nh) @ gray.astype(np.float64) @ area_weights(w, nw).T
    resized = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
    outimg = np.zeros((size, size), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    outimg[top:top + nh, left:left + nw] = resized
    return outimg


for name in ["nih-00000001_000.png", "tbx11k-tb0005.png", "16747_3_1.jpg"]:
    gray = pil_gray(os.path.join(samples, name))
    gray.tofile(os.path.join(out, name + ".pil.raw"))
    mgca_resize(gray, 256).tofile(os.path.join(out, name + ".resized.raw"))
    manifest[name] = {"width": gray.shape[1], "height": gray.shape[0]}

# Enlarging and a wide image: a random 37x23 image to 64 px.
small = rng.integers(0, 256, (23, 37)).astype(np.uint8)
small.tofile(os.path.join(out, "small.raw"))
mgca_resize(small, 64).tofile(os.path.join(out, "small.resized.raw"))

print(json.dumps(manifest))
