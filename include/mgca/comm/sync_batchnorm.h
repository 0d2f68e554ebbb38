// BatchNorm whose statistics are computed over the global batch.
//
// For input [N, C] or [N, C, *] on each rank, forward and backward equal
// torch BatchNorm over the concatenation of all ranks' inputs (same outputs,
// input gradients, weight/bias gradients and running statistics), up to
// floating-point reassociation. Every rank must call forward in the same
// order with the same C (N may differ). Training with a communicator, of
// any size, takes the synchronized path, so one rank computes exactly what W
// ranks do (float64 statistics); without one (or in eval) it is torch's
// BatchNorm. Parameter and buffer names match
// torch::nn::BatchNorm (weight, bias, running_mean, running_var,
// num_batches_tracked) so pretrained weights load unchanged.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <memory>

#include "mgca/comm/communicator.h"

namespace mgca::comm {

struct SyncBatchNormOptions {
  int64_t num_features = 0;
  double eps = 1e-5;
  double momentum = 0.1;
  bool affine = true;
  bool track_running_stats = true;
};

class SyncBatchNormImpl : public torch::nn::Cloneable<SyncBatchNormImpl> {
 public:
  explicit SyncBatchNormImpl(SyncBatchNormOptions options,
                             std::shared_ptr<Communicator> comm = nullptr);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& input);

  // Set (or clear, with nullptr) the group statistics are synchronized over.
  void set_communicator(std::shared_ptr<Communicator> comm) { comm_ = std::move(comm); }
  const std::shared_ptr<Communicator>& communicator() const { return comm_; }
  const SyncBatchNormOptions& options() const { return options_; }

  torch::Tensor weight, bias;                                   // [C] when affine
  torch::Tensor running_mean, running_var, num_batches_tracked;  // when tracking

 private:
  SyncBatchNormOptions options_;
  std::shared_ptr<Communicator> comm_;
};
TORCH_MODULE(SyncBatchNorm);

}  // namespace mgca::comm
