#!/opt/mgca-venv/bin/python
"""Independent references for the segmentation and detection metrics
(test_localization_metrics.cpp): reads cases as JSON from argv[1], prints JSON.

Detection, single class, boxes (x0, y0, x1, y1[, score]):
  torchmetrics  MeanAveragePrecision(iou_thresholds=...) over every image;
  pycocotools   COCOeval with params.iouThrs set, over every image;
  mgca          MGCA's ssl_detector.py flow: only images with a target box and
                a detection go to MeanAveragePrecision.
Dice: MGCA's SSLSegmenter.get_dice per batch, averaged over batches.
"""
import contextlib
import io
import json
import sys

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics.detection.mean_ap import MeanAveragePrecision


def torchmetrics_map(preds, targets, thresholds):
    metric = MeanAveragePrecision(iou_thresholds=thresholds)
    p = [dict(boxes=torch.tensor([d[:4] for d in ds], dtype=torch.float32).reshape(-1, 4),
              scores=torch.tensor([d[4] for d in ds], dtype=torch.float32),
              labels=torch.zeros(len(ds), dtype=torch.int64)) for ds in preds]
    t = [dict(boxes=torch.tensor(ts, dtype=torch.float32).reshape(-1, 4),
              labels=torch.zeros(len(ts), dtype=torch.int64)) for ts in targets]
    metric.update(p, t)
    return float(metric.compute()["map"])


def pycocotools_map(preds, targets, thresholds):
    f32 = lambda v: float(np.float32(v))
    images = [{"id": i + 1} for i in range(len(targets))]
    annotations = []
    for i, ts in enumerate(targets):
        for b in ts:
            x0, y0, x1, y1 = map(f32, b)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
    dets = []
    for i, ds in enumerate(preds):
        for d in ds:
            x0, y0, x1, y1, s = map(f32, d)
            dets.append({"image_id": i + 1, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": s})
    if not dets:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1}]}
        gt.createIndex()
        dt = gt.loadRes(dets)
        e = COCOeval(gt, dt, "bbox")
        e.params.iouThrs = np.array(thresholds, dtype=np.float64)
        e.evaluate()
        e.accumulate()
    precision = e.eval["precision"][:, :, 0, 0, -1]  # T, R, class 0, area all, maxDets 100
    return float(precision[precision > -1].mean()) if (precision > -1).any() else -1.0


def mgca_dice(probability, truth, threshold=0.5):
    # SSLSegmenter.get_dice, verbatim in its arithmetic.
    batch_size = len(truth)
    probability = probability.view(batch_size, -1)
    truth = truth.view(batch_size, -1)
    p = (probability > threshold).float()
    t = (truth > 0.5).float()
    t_sum = t.sum(-1)
    p_sum = p.sum(-1)
    neg_index = torch.nonzero(t_sum == 0)
    pos_index = torch.nonzero(t_sum >= 1)
    dice_neg = (p_sum == 0).float()
    dice_pos = 2 * (p * t).sum(-1) / ((p + t).sum(-1))
    dice = torch.cat([dice_pos[pos_index], dice_neg[neg_index]])
    return torch.mean(dice).item()


cases = json.load(open(sys.argv[1]))
out = {"detection": [], "dice": []}
for case in cases["detection"]:
    preds, targets, thresholds = case["predictions"], case["targets"], case["thresholds"]
    kept = [i for i in range(len(targets)) if targets[i] and preds[i]]
    out["detection"].append({
        "torchmetrics": torchmetrics_map(preds, targets, thresholds),
        "pycocotools": pycocotools_map(preds, targets, thresholds),
        "mgca": torchmetrics_map([preds[i] for i in kept], [targets[i] for i in kept], thresholds) if kept else None,
    })
for case in cases["dice"]:
    size = case["pixels"]
    prob = torch.tensor(case["probability"], dtype=torch.float32).reshape(-1, size)
    truth = torch.tensor(case["truth"], dtype=torch.float32).reshape(-1, size)
    b = case["batch_size"]
    batches = [mgca_dice(prob[k:k + b], truth[k:k + b]) for k in range(0, len(truth), b)]
    out["dice"].append(float(np.mean(batches)))
print(json.dumps(out))
