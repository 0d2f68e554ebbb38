// SyncBatchNorm's output takes in-place ops (the model's heads and ResNet
// apply relu_ to it) and gives the same values and gradients as
// BatchNorm + relu on the gathered batch, for 2-D and 4-D inputs, affine or not.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/comm/communicator.h"
#include "mgca/comm/sync_batchnorm.h"
#include "support/tensor_checks.h"

namespace mgca::comm {
namespace {

std::shared_ptr<Communicator> world_comm() {
  static auto comm = Communicator::world();
  return comm;
}

void check(std::vector<int64_t> local_shape, bool affine) {
  auto comm = world_comm();
  const int w = comm->size(), r = comm->rank();
  std::vector<int64_t> global_shape = local_shape;
  global_shape[0] *= w;
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(77);
  const torch::Tensor all = torch::randn(global_shape, gen, torch::kFloat64);
  const torch::Tensor upstream = torch::randn(global_shape, gen, torch::kFloat64);
  const int64_t b = local_shape[0];

  SyncBatchNorm sync(SyncBatchNormOptions{local_shape[1], 1e-5, 0.1, affine}, comm);
  sync->to(torch::kFloat64);
  torch::Tensor x = all.narrow(0, r * b, b).clone().requires_grad_(true);
  torch::Tensor y = sync->forward(x).relu_();  // in place on the output
  (y * upstream.narrow(0, r * b, b)).sum().backward();

  torch::Tensor weight, bias;
  if (affine) {
    weight = torch::ones({local_shape[1]}, torch::kFloat64);
    bias = torch::zeros({local_shape[1]}, torch::kFloat64);
  }
  torch::Tensor xr = all.clone().requires_grad_(true);
  torch::Tensor yr = torch::relu(torch::batch_norm(xr, weight, bias, {}, {}, /*training=*/true, 0.1, 1e-5, false));
  (yr * upstream).sum().backward();

  EXPECT_TRUE(test::AllClose(y.detach(), yr.detach().narrow(0, r * b, b), 1e-10, 1e-12));
  // Every rank's loss covers its own rows; their sum is the global loss, so
  // the ranks' input gradients placed side by side are the global gradient.
  torch::Tensor placed = torch::zeros_like(xr.grad());
  placed.narrow(0, r * b, b).copy_(x.grad());
  comm->all_reduce(placed, ReduceOp::Sum);
  EXPECT_TRUE(test::AllClose(placed, xr.grad(), 1e-9, 1e-11));
}

TEST(SyncBatchNormInPlace, TwoDimensionalAffine) { check({3, 5}, true); }
TEST(SyncBatchNormInPlace, TwoDimensionalNotAffine) { check({3, 5}, false); }
TEST(SyncBatchNormInPlace, FourDimensional) { check({2, 4, 3, 3}, true); }

}  // namespace
}  // namespace mgca::comm
