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
#include "mgca/eval/detection.h"
#include "mgca/eval/results.h"
#include "mgca/io/dataset_file.h"
#include "mgca/model/image_encoder.h"

namespace mgca::eval {

struct DetectOptions {
  // mgca_detector.py: AdamW lr 5e-4, weight decay 1e-6, batch 16, at most 50
  // epochs, early stopping on the validation mAP (patience 10).
  double learning_rate = 5e-4;
  double weight_decay = 1e-6;
  int64_t batch_size = 16;  // global: split over the ranks
  int64_t max_epochs = 50;
  int64_t patience = 10;
  // Square input side, a multiple of 32; 0: the encoder's (ViT: its image
  // size; ResNet: 224, MGCA's imsize).
  int64_t input_size = 0;
  YoloConstants yolo;
};

struct DetectGridOptions {
  std::vector<double> fractions = {0.01, 0.1, 1.0};
  int64_t seeds = 1;
  uint64_t base_seed = 42;  // MGCA's default seed
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

struct DetectRun {
  double test_map = 0.0;  // −1 when no test image has both a target and a detection (torchmetrics' convention)
  int64_t test_images_scored = 0;  // test images the mAP scored (MGCA's subset: a target and a detection)
  int64_t train_images = 0;
  int64_t epochs = 0;
  int64_t best_epoch = 0;  // 1-based epoch of the best validation mAP
  double best_val_map = 0.0;
};
// One training run; equal on every rank. Collective.
DetectRun train_detector(comm::Communicator& comm, const std::shared_ptr<model::ImageEncoderImpl>& encoder,
                         const BoxedImages& train, const std::vector<int64_t>& train_rows, const BoxedImages& val,
                         const BoxedImages& test, const DetectOptions& options, uint64_t seed);

// The fraction × seed grid for one encoder; adds one ResultEntry (metric
// "mAP") per fraction to `results` on every rank. Fractions keep the rows of
// fraction_rows (downstream.h).
void run_detect_grid(comm::Communicator& comm, const std::string& model_name,
                     const std::shared_ptr<model::ImageEncoderImpl>& encoder, const std::string& dataset_name,
                     const BoxedImages& train, const BoxedImages& val, const BoxedImages& test,
                     const DetectGridOptions& options, Results& results);

}  // namespace mgca::eval
