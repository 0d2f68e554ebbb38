// Linear probe: a linear classifier trained on frozen image features.
//
// Optimizer: AdamW with MGCA's linear-evaluation settings (ssl_finetuner.py:
// lr 5e-4, betas (0.9, 0.999), weight decay 1e-6, batch 48, at most 50
// epochs, early stopping on the validation loss with patience 10, the best
// validation-loss weights restored). AdamW is kept rather than L-BFGS so that
// the protocol matches the papers' figures; two changes make it sound on
// precomputed features of any scale and any training-set size:
//  * features are standardized with the mean/std of the training subset
//    (an affine map, so the classifier stays linear in the raw features;
//    random-init and pretrained encoders get the same optimization), and
//  * an "epoch" is at least `min_steps_per_epoch` steps (the permutation
//    wraps around), so a 1 % subset of a small dataset still gets a real
//    optimization budget.
// Loss: BCE-with-logits on the labelled entries (NaN targets masked out) for
// multi-label tasks; softmax cross-entropy for multi-class (rows with class
// −1 dropped). Weights start at zero (the problem is convex); the mini-batch
// order comes from util::Rng(seed), so a run is a deterministic function of
// (features, targets, options, seed) on a given machine and thread count.
// Single process: call on rank 0 after features are gathered.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "mgca/eval/labels.h"

namespace mgca::eval {

struct ProbeOptions {
  double learning_rate = 5e-4;
  double weight_decay = 1e-6;
  int64_t batch_size = 48;
  int64_t max_epochs = 50;
  int64_t patience = 10;             // epochs without a lower validation loss
  int64_t min_steps_per_epoch = 25;
  bool standardize = true;
  bool record_batches = false;       // keep every step's row indices (tests replay them in PyTorch)
};

struct ProbeModel {
  torch::Tensor mean;    // [d] feature mean of the training subset (0 when not standardized)
  torch::Tensor scale;   // [d] 1/std (1 when not standardized)
  torch::Tensor weight;  // [C, d] on standardized features
  torch::Tensor bias;    // [C]
  TaskKind kind = TaskKind::MultiLabel;

  // Logits [n, C] for raw features [n, d] (float32).
  torch::Tensor logits(const torch::Tensor& features) const;
};

struct ProbeHistory {
  std::vector<double> train_loss;  // mean over each epoch's steps
  std::vector<double> val_loss;
  int64_t best_epoch = 0;          // 0-based epoch whose weights were kept
  int64_t steps = 0;
  bool stopped_early = false;
  std::vector<std::vector<int64_t>> batches;  // per step, when options.record_batches
};

struct ProbeFit {
  ProbeModel model;
  ProbeHistory history;
};

// Trains on (train_features [n, d], train targets) with early stopping on
// (val_features, val targets). Errors: shape mismatches, a target kind that
// differs between train and val, no labelled training rows, non-finite
// features (naming the row).
ProbeFit train_linear_probe(const torch::Tensor& train_features, const Targets& train,
                            const torch::Tensor& val_features, const Targets& val,
                            const ProbeOptions& options, uint64_t seed);

// Mean loss of the model on (features, targets) as optimized (BCE/CE).
double probe_loss(const ProbeModel& model, const torch::Tensor& features, const Targets& targets);

// Scores for metrics: sigmoid probabilities (multi-label) or softmax
// probabilities (multi-class), [n, C], as a host matrix.
Matrix probe_scores(const ProbeModel& model, const torch::Tensor& features);

// Converts a 2-D float tensor to a host matrix (double) and back.
Matrix to_matrix(const torch::Tensor& tensor);
torch::Tensor from_matrix(const Matrix& matrix);

}  // namespace mgca::eval
