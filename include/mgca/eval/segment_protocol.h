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
#include "mgca/eval/downstream.h"
#include "mgca/eval/results.h"
#include "mgca/io/dataset_file.h"
#include "mgca/model/image_encoder.h"

namespace mgca::eval {

struct SegmentOptions : HeadTraining {
  // MGCA's mgca_segmenter.py: AdamW lr 2e-4, weight decay 0.05, batch 8,
  // at most 50 epochs, early stopping on the validation loss (patience 10).
  SegmentOptions() : HeadTraining{2e-4, 0.05, 8, 50, 10} {}
  // Square input side; 0: the encoder's (ViT: its image size; ResNet: 224, MGCA's imsize).
  int64_t input_size = 0;
};

struct SegmentGridOptions : FractionGrid {
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

// One training run: test_value is the test Dice, the validation figure the
// loss (equal on every rank). Collective.
HeadRun train_segmenter(comm::Communicator& comm, const std::shared_ptr<model::ImageEncoderImpl>& encoder,
                        const MaskedImages& train, const std::vector<int64_t>& train_rows,
                        const MaskedImages& val, const MaskedImages& test, const SegmentOptions& options,
                        uint64_t seed);

}  // namespace mgca::eval
