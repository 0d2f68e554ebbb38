#!/opt/mgca-venv/bin/python
"""torchvision baseline for bench/data/bench_data.cpp: the same augmentations
on the same 256-px images, one thread, as MGCA's and ConVIRT's PyTorch code
runs them (PIL "L" images through torchvision transforms).

    /opt/mgca-venv/bin/python bench/reference/data_torchvision.py DATASET [--seconds 2]

DATASET is a 256-px dataset folder (bench_data --work DIR leaves one in
DIR/synth256). Prints one JSON object:
  augment.<pipeline>.images_per_s       PIL image -> augmented normalised tensor
  read_augment.<pipeline>.images_per_s  plus reading the image with h5py
  loader.<pipeline>.threads_1           a torch DataLoader (num_workers=0) of batch 64
"""
import argparse
import json
import os
import time

import h5py
import numpy as np
import torch
from PIL import Image
from torchvision import transforms

parser = argparse.ArgumentParser()
parser.add_argument("dataset")
parser.add_argument("--seconds", type=float, default=2.0)
args = parser.parse_args()
torch.set_num_threads(1)

manifest = json.load(open(os.path.join(args.dataset, "dataset.json")))
shard = h5py.File(os.path.join(args.dataset, manifest["shards"][0]["file"]), "r")
images = shard["images"]
n = images.shape[0]

normalize = transforms.Normalize([0.5], [0.5])
pipelines = {
    # MGCA's DataTransforms(is_train=True, crop_size=224)
    "mgca": transforms.Compose([transforms.RandomCrop(224), transforms.ToTensor(), normalize]),
    # ConVIRT's augmentations (docs/contract.md §5.4), same ranges and blur kernel as ours
    "convirt": transforms.Compose([
        transforms.RandomResizedCrop(224, scale=(0.6, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.RandomAffine(20, translate=(0.1, 0.1), scale=(0.95, 1.05)),
        transforms.ColorJitter(brightness=(0.6, 1.4), contrast=(0.6, 1.4)),
        transforms.GaussianBlur(23, sigma=(0.1, 3.0)),
        transforms.ToTensor(),
        normalize,
    ]),
}


def rate(body):
    body(0)
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        calls += 1
        body(calls)
    return calls / (time.perf_counter() - start)


cached = [Image.fromarray(images[i]) for i in range(64)]
result = {"benchmark": "data_torchvision", "torch": torch.__version__,
          "torchvision": __import__("torchvision").__version__, "augment": {}, "read_augment": {}, "loader": {}}
for name, pipeline in pipelines.items():
    result["augment"][name] = {"images_per_s": rate(lambda i: pipeline(cached[i % 64]))}
    result["read_augment"][name] = {"images_per_s": rate(lambda i: pipeline(Image.fromarray(images[i % n])))}

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return pipeline(Image.fromarray(images[i]))

    loader = torch.utils.data.DataLoader(Images(), batch_size=64, shuffle=True, num_workers=0, drop_last=True)
    seen, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        for batch in loader:
            seen += batch.shape[0]
            if time.perf_counter() - start >= args.seconds:
                break
    result["loader"][name] = {"threads_1": {"images_per_s": seen / (time.perf_counter() - start)}}

print(json.dumps(result, indent=2))
