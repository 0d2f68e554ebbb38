// MGCA's segmentation protocol (docs/evaluation.md, "Segmentation"): for
// each label fraction × seed, a fresh decoder (segmentation.h) on the frozen
// encoder is trained on that fraction of the training masks with AdamW,
// stopped early on the validation loss, and its best state scored on the
// test split by the per-image Dice.
//
// Across ranks: every rank calls with the same arguments and the same
// encoder weights. Each global batch is split over the ranks (rank r takes
// its contiguous share), every rank's decoder gradients are averaged with
// one all-reduce per step (DDP's rule: the Dice term is each rank's own
// batch, as under Lightning DDP), and validation loss and test Dice are
// summed over ranks, so every rank ends with the same decoder and figures.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/eval/results.h"
#include "mgca/io/dataset_file.h"
#include "mgca/model/image_encoder.h"

namespace mgca::eval {

struct SegmentOptions {
  // MGCA's mgca_segmenter.py: AdamW lr 2e-4, weight decay 0.05, batch 8,
  // at most 50 epochs, early stopping on the validation loss (patience 10).
  double learning_rate = 2e-4;
  double weight_decay = 0.05;
  int64_t batch_size = 8;  // global: split over the ranks
  int64_t max_epochs = 50;
  int64_t patience = 10;
  // Square input side; 0: the encoder's (ViT: its image size; ResNet: 224, MGCA's imsize).
  int64_t input_size = 0;
};

struct SegmentGridOptions {
  std::vector<double> fractions = {0.01, 0.1, 1.0};
  int64_t seeds = 1;
  uint64_t base_seed = 42;  // MGCA's default seed
  SegmentOptions train;
};

// The images and masks of one split resized to the model input: images
// uint8 [n, s, s] (bilinear), masks uint8 [n, s, s] (nearest, 0/1).
struct MaskedImages {
  std::vector<uint8_t> images, masks;
  int64_t count = 0, size = 0;
};
// Errors name the dataset when it has no masks.
MaskedImages load_masked_images(const io::Dataset& dataset, int64_t input_size);

// One training run: returns the test Dice (equal on every rank). Collective.
struct SegmentRun {
  double test_dice = 0.0;
  // What test_dice averages: the mean Dice of the test images with a lesion
  // (test_lesion_images of them), and the share of lesion-free images
  // predicted empty (each scores 1 then, else 0).
  double test_lesion_dice = 0.0, test_empty_correct = 0.0;
  int64_t test_lesion_images = 0;
  int64_t train_images = 0;
  int64_t epochs = 0;      // epochs run (early stopping included)
  int64_t best_epoch = 0;  // 1-based epoch of the best validation loss
  double best_val_loss = 0.0;
};
SegmentRun train_segmenter(comm::Communicator& comm, const std::shared_ptr<model::ImageEncoderImpl>& encoder,
                           const MaskedImages& train, const std::vector<int64_t>& train_rows,
                           const MaskedImages& val, const MaskedImages& test, const SegmentOptions& options,
                           uint64_t seed);

// The fraction × seed grid for one encoder; adds one ResultEntry (metric
// "Dice") per fraction to `results` on every rank. Fraction f keeps
// max(1, floor(f · n)) training images drawn by a seeded permutation (MGCA:
// np.random.choice of int(f · n) image ids).
void run_segment_grid(comm::Communicator& comm, const std::string& model_name,
                      const std::shared_ptr<model::ImageEncoderImpl>& encoder, const std::string& dataset_name,
                      const MaskedImages& train, const MaskedImages& val, const MaskedImages& test,
                      const SegmentGridOptions& options, Results& results);

}  // namespace mgca::eval
