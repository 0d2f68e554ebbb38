// Segmentation and detection metrics as MGCA's downstream code computes them
// (docs/evaluation.md, "Segmentation" and "Detection"). Host code, no torch,
// one process: callers gather predictions on rank 0 first.
#pragma once

#include <cstdint>
#include <vector>

#include "mgca/io/dataset_file.h"

namespace mgca::eval {

// Dice of one image, MGCA's get_dice (ssl_segmenter.py): prediction and truth
// are 0/1 masks of `pixels` bytes (the caller thresholds probabilities at
// 0.5). With a non-empty truth, 2|P∩T| / (|P| + |T|); with an empty truth,
// 1 when the prediction is empty too, else 0.
double image_dice(const uint8_t* predicted, const uint8_t* truth, int64_t pixels);

// The per-image mean of image_dice over a test set. MGCA averages per batch
// and then over batches, which equals this when every batch is full.
class DiceMean {
 public:
  void add(const uint8_t* predicted, const uint8_t* truth, int64_t pixels);
  double mean() const;  // error when nothing was added
  int64_t count() const { return count_; }

 private:
  double sum_ = 0.0;
  int64_t count_ = 0;
};

struct ScoredBox {
  io::Box box;
  double score = 0.0;
};

// IoU of two (x0, y0, x1, y1) boxes, areas (x1 − x0)(y1 − y0) (COCO's; MGCA's
// NMS uses the +1 pixel convention instead: nms_iou).
double box_iou(const io::Box& a, const io::Box& b);
// The IoU of MGCA's bbox_iou (yolo_loss.py, used by its NMS): inclusive pixel
// extents, areas (x1 − x0 + 1)(y1 − y0 + 1).
double nms_iou(const io::Box& a, const io::Box& b);

// MGCA's RSNA detection thresholds: IoU 0.4, 0.45, ..., 0.75 (ssl_detector.py).
std::vector<double> mgca_map_iou_thresholds();

struct MapOptions {
  std::vector<double> iou_thresholds = mgca_map_iou_thresholds();
  int64_t max_detections = 100;  // per image, highest scores first (COCO's last maxDets)
  // MGCA passes torchmetrics only the images that have at least one target
  // box and at least one detection left after NMS; true reproduces that
  // subset, false scores every image (the COCO definition).
  bool mgca_image_subset = true;
};

struct MapReport {
  double map = 0.0;                // mean over thresholds; −1 when no image has a target (COCO's convention)
  std::vector<double> per_threshold;
  int64_t images = 0;              // images scored (after the subset rule)
  int64_t targets = 0;             // target boxes in them
  int64_t detections = 0;          // detections in them (after max_detections)
};

// Single-class mean average precision as torchmetrics' MeanAveragePrecision
// (pycocotools backend, area "all") computes it: per image, detections by
// descending score (stable) are greedily matched to the unmatched target of
// highest IoU ≥ t; over all images, detections sorted by score (stable,
// image order), precision made monotone, sampled at the 101 recall points
// 0, 0.01, ..., 1 (0 beyond the largest recall), averaged; then averaged
// over thresholds. predictions[i] and targets[i] belong to image i.
MapReport mean_average_precision(const std::vector<std::vector<ScoredBox>>& predictions,
                                 const std::vector<std::vector<io::Box>>& targets,
                                 const MapOptions& options = {});

}  // namespace mgca::eval
