// Projection heads and the prototype layer (docs/contract.md §2.4, §2.5).
//
// Batch-norm heads use comm::SyncBatchNorm: with a communicator of size > 1
// their training statistics cover the global batch (every rank must call
// forward/backward in the same order); with none they are per-process.
#pragma once

#include <torch/nn/modules/linear.h>

#include <memory>

#include "mgca/comm/communicator.h"
#include "mgca/comm/sync_batchnorm.h"

namespace mgca::model {

// MGCA's global head: Linear(in, hidden)–BN–ReLU–Linear(hidden, out)–BN(affine=False),
// the Linears without bias (a bias before BN only shifts the running mean;
// load_weights folds a checkpoint's fc1.bias/fc2.bias into bn1/bn2's
// running_mean). x [n, in] → [n, out]. Names: fc1, bn1, fc2, bn2.
class ProjectionHeadImpl : public torch::nn::Module {
 public:
  ProjectionHeadImpl(int64_t in, int64_t hidden, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  void set_communicator(const std::shared_ptr<comm::Communicator>& comm);

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  comm::SyncBatchNorm bn1{nullptr}, bn2{nullptr};
};
TORCH_MODULE(ProjectionHead);

// MGCA's local head: the same layers as 1×1 convolutions over tokens.
// x [b, T, in] → [b, T, out]; BatchNorm statistics over all b·T tokens (as
// BatchNorm1d over [b, C, T]), so it runs as the global head on [b·T, in].
class LocalHeadImpl : public torch::nn::Module {
 public:
  LocalHeadImpl(int64_t in, int64_t hidden, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  void set_communicator(const std::shared_ptr<comm::Communicator>& comm);

  ProjectionHead head{nullptr};
};
TORCH_MODULE(LocalHead);

// ConVIRT's head: Linear(in, hidden)–ReLU–Linear(hidden, out). Names fc1, fc2.
class MlpHeadImpl : public torch::nn::Module {
 public:
  MlpHeadImpl(int64_t in, int64_t hidden, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(MlpHead);

// Prototype layer: weight C [K, d] (nn.Linear(d, K, bias=False)).
// forward(x [n, d]) = x·Cᵀ [n, K].
class PrototypesImpl : public torch::nn::Module {
 public:
  PrototypesImpl(int64_t num_prototypes, int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);
  // Rows of C re-normalized to unit L2 norm in place, without gradient (MGCA
  // does this at the start of every step). Equal on every rank when C is.
  void normalize_();
  // (The first epochs' freeze is the MGCA task's: it drops C's gradient
  // after backward, as the official code does.)

  torch::Tensor weight;
};
TORCH_MODULE(Prototypes);

}  // namespace mgca::model
