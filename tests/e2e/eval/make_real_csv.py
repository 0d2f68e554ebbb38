#!/opt/mgca-venv/bin/python
"""Writes a small real-image classification table for `mgca prep --format csv`.

argv: SAMPLES_DIR OUT_DIR COUNT

From the real chest X-rays in SAMPLES_DIR (shared/data/cxr-samples) it
writes COUNT variants (random crop, small rotation, brightness/contrast,
alternating 8-bit PNG, 16-bit PNG and JPEG files) to OUT_DIR/images/ and
OUT_DIR/table.csv with columns id,image_path,report,split and one one-hot
column per source image (a multi-class task: which radiograph is this?).
"""
import csv
import os
import random
import sys

import numpy as np
from PIL import Image, ImageEnhance


def main():
    samples, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sources = sorted(f for f in os.listdir(samples) if f.lower().endswith((".png", ".jpg", ".jpeg")))
    assert len(sources) >= 3, sources
    classes = [os.path.splitext(s)[0] for s in sources]
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    rng = random.Random(1234)
    rows = []
    for i in range(count):
        k = i % len(sources)
        img = Image.open(os.path.join(samples, sources[k])).convert("L")
        w, h = img.size
        scale = rng.uniform(0.8, 1.0)
        cw, ch = int(w * scale), int(h * scale)
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = img.crop((x0, y0, x0 + cw, y0 + ch)).rotate(rng.uniform(-8, 8), resample=Image.BILINEAR)
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
        img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.8, 1.2))
        kind = i % 3
        if kind == 0:
            name = f"img{i:04d}.png"
            img.save(os.path.join(out, "images", name))
        elif kind == 1:
            name = f"img{i:04d}-16bit.png"
            wide = (np.asarray(img, dtype=np.uint16) * 257).astype(np.uint16)
            Image.fromarray(wide).save(os.path.join(out, "images", name))
        else:
            name = f"img{i:04d}.jpg"
            img.save(os.path.join(out, "images", name), quality=92)
        split = "test" if i % 5 == 0 else ("val" if i % 5 == 1 else "train")
        side = "left" if rng.random() < 0.5 else "right"
        report = (f"Frontal chest radiograph number {i} from the {classes[k]} collection. "
                  f"The image is rotated slightly to the {side}. No acute abnormality is described.")
        onehot = ["1" if c == k else "0" for c in range(len(classes))]
        rows.append([f"real-{i:04d}", os.path.join("images", name), report, split] + onehot)
    with open(os.path.join(out, "table.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image_path", "report", "split"] + classes)
        writer.writerows(rows)


if __name__ == "__main__":
    main()
