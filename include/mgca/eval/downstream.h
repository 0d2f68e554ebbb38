// What the dense downstream protocols (segmentation, detection) share: the
// frozen encoder under a head, the ResNet's multi-scale features, the input
// normalisation, how rows are split over ranks, which training images a
// label fraction keeps, the head's options and fine-tuning loop with early
// stopping, and the fraction × seed grid.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/eval/results.h"
#include "mgca/model/image_encoder.h"
#include "mgca/model/resnet.h"

namespace mgca::eval {

// The stem (/2) and layer1..layer4 (/4../32) of a ResNet, without the
// encoder's own input resize. Run under NoGradGuard by the caller (MGCA's U-Net and YOLO backbones take the
// torchvision stages as they are).
std::vector<torch::Tensor> resnet_pyramid(model::ResNetImpl& resnet, const torch::Tensor& images);

// A head trained on a frozen image encoder (segmentation.h, detection.h):
// the encoder is registered as "encoder" with requires_grad off and stays in
// eval mode whatever train() is called with.
class FrozenEncoderNet : public torch::nn::Module {
 public:
  // Every parameter outside the encoder: what the optimiser trains.
  std::vector<torch::Tensor> head_parameters();
  // train(): the head only; the encoder stays in eval mode.
  void train(bool on = true) override;

 protected:
  // `task` names the net in the error when `encoder` is null.
  FrozenEncoderNet(std::shared_ptr<model::ImageEncoderImpl> encoder, const char* task);

  std::shared_ptr<model::ImageEncoderImpl> encoder_;
};

// A fresh head `Net` (the module holder of a FrozenEncoderNet) on
// `encoder`, initialised after torch::manual_seed(seed), so the same on every
// rank, on the encoder's device and in train mode.
template <typename Net>
Net new_head(const std::shared_ptr<model::ImageEncoderImpl>& encoder, uint64_t seed) {
  torch::manual_seed(seed);
  Net net(encoder);
  net->to(encoder->parameters().front().device());
  net->train();
  return net;
}

// The square input side of a downstream head: `requested` when positive,
// else a ViT's image size or 224 for a ResNet (MGCA's imsize).
int64_t downstream_input_size(const model::ImageEncoderImpl& encoder, int64_t requested);

// Downstream images as MGCA's segmentation and detection datasets feed them:
// uint8 [b, 1, s, s] → float32 scaled to [0, 1] and Normalize(0.5, 0.5).
torch::Tensor normalise_downstream_images(const torch::Tensor& images_uint8);

// Rank `rank`'s contiguous share of `rows` among `size` ranks (rows n·r/W ..
// n·(r+1)/W): how the downstream protocols split a global batch or a split.
// 0, 1, ..., n − 1: every row of a split.
std::vector<int64_t> all_rows(int64_t n);
std::vector<int64_t> rank_share(const std::vector<int64_t>& rows, int rank, int size);

// The training rows a label fraction keeps, ascending: max(1, floor(f · n))
// rows of a seeded permutation (all n when f = 1), identical on every rank
// (MGCA: np.random.choice of int(f · n) image ids).
std::vector<int64_t> fraction_rows(int64_t n, double fraction, uint64_t seed);

// The optimiser and stopping rule of a head's fine-tuning (MGCA's segmenter
// and detector differ only in the values: SegmentOptions, DetectOptions).
struct HeadTraining {
  double learning_rate = 0, weight_decay = 0;
  int64_t batch_size = 0;  // global: split over the ranks
  int64_t max_epochs = 0, patience = 0;
};

// The label fractions × seeds a dense protocol runs (MGCA's defaults).
struct FractionGrid {
  std::vector<double> fractions = {0.01, 0.1, 1.0};
  int64_t seeds = 1;        // seeds base_seed, base_seed + 1, ...
  uint64_t base_seed = 42;  // MGCA's default seed
};

// Local: what a head's training run needs before it starts, with errors
// naming `task`: non-empty training rows and val and test splits, a
// positive batch size and epoch count.
void check_head_run(const std::string& task, size_t train_rows, int64_t val_count, int64_t test_count,
                    const HeadTraining& options);
enum class ValidationGoal { Minimise, Maximise };
struct HeadTrainingRun {
  int64_t epochs = 0;      // epochs run (early stopping included)
  int64_t best_epoch = 0;  // 1-based epoch of the best validation figure
  double best_validation = 0.0;
};

// Fine-tunes `parameters` of `net` with AdamW on `train_rows`, each epoch in
// a seeded order (key: seed, epoch[, order_stream]) of global batches of
// which every rank takes its rank_share; `batch_loss(rows)` is this rank's
// loss on its rows. Gradients are averaged over the ranks that had rows.
// After each epoch `validate()` scores the net; only a strictly better score
// counts (Lightning's EarlyStopping, min_delta 0), `patience` epochs without
// one stop the run, and the net ends with the best epoch's weights and
// buffers. Collective: every rank passes the same rows, options and seed, and
// `validate` returns the same value on every rank. Errors name `task` when no
// epoch scored (a NaN figure).
HeadTrainingRun train_head(comm::Communicator& comm, torch::nn::Module& net, std::vector<torch::Tensor> parameters,
                           const std::vector<int64_t>& train_rows, const HeadTraining& options, uint64_t seed,
                           std::optional<uint64_t> order_stream,
                           const std::function<torch::Tensor(const std::vector<int64_t>& rows)>& batch_loss,
                           const std::function<double()>& validate, ValidationGoal goal, const std::string& task);

// One fine-tuning run of a head on a label fraction, scored on the test
// split (train_segmenter, train_detector).
struct HeadRun {
  double test_value = 0.0;   // the protocol's test figure (Dice, mAP)
  int64_t train_images = 0;
  HeadTrainingRun training;  // epochs, best epoch, its validation figure
  // Further figures of the run for the results JSON (what the test figure
  // averages, e.g. segmentation's lesion and lesion-free parts); a whole
  // number is written as an integer.
  std::map<std::string, double> details;
};

// For every fraction of `grid`, `run(seed, fraction_rows(train_count,
// fraction, seed))` for its seeds, logged on rank 0 and added as one
// ResultEntry (`metric`, setting "F%") to `results`, each run's details
// with its best validation figure under `validation_key`. `task` names the
// protocol in the log ("segment", "detect").
void run_fraction_grid(const std::string& task, const std::string& model_name, const std::string& dataset_name,
                       const std::string& metric, const std::string& validation_key, const FractionGrid& grid,
                       int64_t train_count,
                       const std::function<HeadRun(uint64_t seed, const std::vector<int64_t>& rows)>& run,
                       Results& results);

}  // namespace mgca::eval
