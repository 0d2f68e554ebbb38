// MGCA's detection protocol (docs/evaluation.md, "Detection"): for each label
// fraction × seed, a fresh YOLOv3 head (detection.h) on the frozen encoder is
// trained on that fraction of the training images with AdamW, the epoch of
// the best validation mAP is kept (early stopping on it), and scored on the
// test split by the mAP over IoU 0.4–0.75 (localization_metrics.h).
//
// Across ranks: every rank calls with the same arguments and the same
// encoder weights. Each global batch is split over the ranks (rank r takes
// its contiguous share) and the head's gradients averaged with one
// all-reduce per parameter per step (as segment_protocol.h); for validation
// and test each rank detects on its share of the split and the detections
// are gathered on every rank, so every rank ends with the same head and
// figures.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/eval/downstream.h"
#include "mgca/eval/detection.h"
#include "mgca/eval/results.h"
#include "mgca/io/dataset_file.h"
#include "mgca/model/image_encoder.h"

namespace mgca::eval {

struct DetectOptions : HeadTraining {
  // mgca_detector.py: AdamW lr 5e-4, weight decay 1e-6, batch 16, at most 50
  // epochs, early stopping on the validation mAP (patience 10).
  DetectOptions() : HeadTraining{5e-4, 1e-6, 16, 50, 10} {}
  // Square input side, a multiple of 32; 0: the encoder's (ViT: its image
  // size; ResNet: 224, MGCA's imsize).
  int64_t input_size = 0;
  YoloConstants yolo;
};

struct DetectGridOptions : FractionGrid {
  DetectOptions train;
};

// The images of one split resized to the model input (uint8 [n, s, s],
// bilinear, as MGCA's cv2.resize) and their boxes scaled to it.
struct BoxedImages {
  std::vector<uint8_t> images;
  std::vector<std::vector<io::Box>> boxes;
  int64_t count = 0, size = 0;
};
// Errors name the dataset when it has no boxes.
BoxedImages load_boxed_images(const io::Dataset& dataset, int64_t input_size);

// Detections (after NMS, at most `max_detections` per image by score) for
// every image of `split`, on every rank. Collective.
std::vector<std::vector<ScoredBox>> detect_split(comm::Communicator& comm, DetectionNet& net, const BoxedImages& split,
                                                 int64_t batch_size, const YoloConstants& constants,
                                                 int64_t max_detections = 100);

// One training run: test_value is the test mAP (−1 when no test image has
// both a target and a detection, torchmetrics' convention), the validation
// figure the mAP; equal on every rank. Collective.
HeadRun train_detector(comm::Communicator& comm, const std::shared_ptr<model::ImageEncoderImpl>& encoder,
                       const BoxedImages& train, const std::vector<int64_t>& train_rows, const BoxedImages& val,
                       const BoxedImages& test, const DetectOptions& options, uint64_t seed);

}  // namespace mgca::eval
