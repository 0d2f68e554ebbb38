// Core collectives, the differentiable gather and SyncBatchNorm checked
// against host computations under mpirun -np 1, 2, 4.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/comm/communicator.h"
#include "mgca/comm/differentiable.h"
#include "mgca/comm/sync_batchnorm.h"
#include "mgca/util/error.h"
#include "support/tensor_checks.h"
#include "support/world.h"

namespace mgca::comm {
namespace {

using test::world;

// Rank r's contribution, reproducible on every rank.
torch::Tensor rank_tensor(int rank, std::vector<int64_t> shape, torch::ScalarType type = torch::kFloat64) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(1000 + rank);
  return torch::randn(shape, gen, torch::kFloat64).to(type);
}

TEST(Collectives, AllReduceSumAvgMaxMin) {
  auto comm = world();
  const int w = comm->size();
  for (auto op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max, ReduceOp::Min}) {
    auto expected = rank_tensor(0, {3, 5});
    for (int r = 1; r < w; ++r) {
      auto t = rank_tensor(r, {3, 5});
      expected = op == ReduceOp::Max   ? torch::maximum(expected, t)
                 : op == ReduceOp::Min ? torch::minimum(expected, t)
                                       : expected + t;
    }
    if (op == ReduceOp::Avg) expected /= w;
    auto mine = rank_tensor(comm->rank(), {3, 5});
    comm->all_reduce(mine, op);
    EXPECT_TRUE(test::AllClose(mine, expected, 1e-12, 1e-12));
  }
}

TEST(Collectives, AllReduceNonContiguousAndEmpty) {
  auto comm = world();
  auto base = rank_tensor(comm->rank(), {4, 6});
  auto view = base.t();  // non-contiguous view must be reduced in place
  comm->all_reduce(view, ReduceOp::Sum);
  auto expected = rank_tensor(0, {4, 6});
  for (int r = 1; r < comm->size(); ++r) expected += rank_tensor(r, {4, 6});
  EXPECT_TRUE(test::AllClose(base, expected, 1e-12, 1e-12));
  auto empty = torch::empty({0, 3});
  EXPECT_NO_THROW(comm->all_reduce(empty, ReduceOp::Sum));
}

TEST(Collectives, AllReduceBfloat16AccumulatesPairwiseInFloat) {
  auto comm = world();
  auto mine = torch::full({1000}, 1.0 + comm->rank(), torch::kBFloat16);
  comm->all_reduce(mine, ReduceOp::Sum);
  const double expected = comm->size() * (comm->size() + 1) / 2.0;
  EXPECT_TRUE(test::AllClose(mine.to(torch::kFloat64), torch::full({1000}, expected, torch::kFloat64), 0, 0));
}

TEST(Collectives, AllGatherReduceScatterBroadcast) {
  auto comm = world();
  const int w = comm->size();
  auto gathered = comm->all_gather(rank_tensor(comm->rank(), {2, 3}));
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < w; ++r) parts.push_back(rank_tensor(r, {2, 3}));
  EXPECT_TRUE(test::AllClose(gathered, torch::cat(parts), 0, 0));

  auto scattered = comm->reduce_scatter(rank_tensor(comm->rank(), {2 * w, 3}), ReduceOp::Sum);
  auto total = rank_tensor(0, {2 * w, 3});
  for (int r = 1; r < w; ++r) total += rank_tensor(r, {2 * w, 3});
  EXPECT_TRUE(test::AllClose(scattered, total.narrow(0, 2 * comm->rank(), 2), 1e-12, 1e-12));

  auto b = rank_tensor(comm->rank(), {7}, torch::kInt64);
  comm->broadcast(b, w - 1);
  EXPECT_TRUE(b.equal(rank_tensor(w - 1, {7}, torch::kInt64)));
  EXPECT_EQ(comm->broadcast_string(comm->rank() == 0 ? "config" : "", 0), "config");
  EXPECT_EQ(comm->any(comm->rank() == w - 1), true);
  EXPECT_EQ(comm->any(false), false);
}

TEST(Collectives, MismatchedShapesNameEveryRank) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "needs two ranks";
  auto t = torch::zeros({4, comm->rank() == 1 ? 9 : 8});
  try {
    comm->all_reduce(t, ReduceOp::Sum);
    FAIL() << "no error for mismatched shapes";
  } catch (const Error& error) {
    const std::string text = error.what();
    EXPECT_NE(text.find("rank 0: all_reduce Float [4, 8]"), std::string::npos) << text;
    EXPECT_NE(text.find("rank 1: all_reduce Float [4, 9]"), std::string::npos) << text;
  }
}

TEST(Differentiable, GatherGradientIsReduceScatterOfTheGlobalGradient) {
  // loss = Σ_r Σ_i c_i · gathered_i with the same c on every rank. The
  // gradient of Σ over ranks of the loss w.r.t. rank r's rows is W · c[rows of r].
  auto comm = world();
  const int w = comm->size();
  auto x = rank_tensor(comm->rank(), {3, 4}).requires_grad_(true);
  auto gathered = all_gather_with_grad(x, comm);
  auto c = rank_tensor(99, {3 * w, 4});
  (gathered * c).sum().backward();
  EXPECT_TRUE(test::AllClose(x.grad(), w * c.narrow(0, 3 * comm->rank(), 3), 1e-12, 1e-12));
}

TEST(SyncBatchNorm, EqualsBatchNormOverTheGlobalBatch) {
  auto comm = world();
  const int w = comm->size();
  for (std::vector<int64_t> local_shape : {std::vector<int64_t>{5, 6}, std::vector<int64_t>{3, 6, 7}}) {
    auto shape_of = [&](int64_t n) { auto s = local_shape; s[0] = n; return s; };
    std::vector<torch::Tensor> inputs, upstream;
    for (int r = 0; r < w; ++r) {
      inputs.push_back(rank_tensor(r, local_shape, torch::kFloat32) * 3 + 10);
      upstream.push_back(rank_tensor(100 + r, local_shape, torch::kFloat32));
    }
    // Reference: plain BatchNorm over the concatenation.
    torch::nn::BatchNorm1d reference(torch::nn::BatchNorm1dOptions(6));
    auto x_all = torch::cat(inputs).requires_grad_(true);
    auto y_all = reference->forward(x_all);
    (y_all * torch::cat(upstream)).sum().backward();

    SyncBatchNormOptions bn_options{6};
    SyncBatchNorm sync(bn_options, comm);
    auto x = inputs[comm->rank()].clone().requires_grad_(true);
    auto y = sync->forward(x);
    (y * upstream[comm->rank()]).sum().backward();

    const int64_t b = local_shape[0];
    EXPECT_TRUE(test::AllClose(y, y_all.narrow(0, b * comm->rank(), b), 1e-5, 1e-6));
    EXPECT_TRUE(test::AllClose(x.grad(), x_all.grad().narrow(0, b * comm->rank(), b), 1e-5, 1e-5));
    auto grad_w = sync->weight.grad().clone();
    auto grad_b = sync->bias.grad().clone();
    comm->all_reduce(grad_w, ReduceOp::Sum);  // local contributions sum to the global gradient
    comm->all_reduce(grad_b, ReduceOp::Sum);
    EXPECT_TRUE(test::AllClose(grad_w, reference->weight.grad(), 1e-5, 1e-5));
    EXPECT_TRUE(test::AllClose(grad_b, reference->bias.grad(), 1e-5, 1e-5));
    EXPECT_TRUE(test::AllClose(sync->running_mean, reference->running_mean, 1e-5, 1e-6));
    EXPECT_TRUE(test::AllClose(sync->running_var, reference->running_var, 1e-5, 1e-6));
    (void)shape_of;
  }
}

// The statistics travel as fp64 sums (count, Σx, Σx²): with a mean 10³
// standard deviations from zero, Σx² − N·mean² loses ~6 of fp64's 16 digits,
// so outputs and gradients still match torch's float64 BatchNorm to 1e-8
// (float32 sums would lose them all).
TEST(SyncBatchNorm, LargeMeanInFloat64) {
  auto comm = world();
  const int w = comm->size();
  std::vector<torch::Tensor> inputs, upstream;
  for (int r = 0; r < w; ++r) {
    inputs.push_back(rank_tensor(r, {4, 3, 5}) * 0.5 + 500);
    upstream.push_back(rank_tensor(200 + r, {4, 3, 5}));
  }
  torch::nn::BatchNorm1d reference(torch::nn::BatchNorm1dOptions(3));
  reference->to(torch::kFloat64);
  auto x_all = torch::cat(inputs).requires_grad_(true);
  (reference->forward(x_all) * torch::cat(upstream)).sum().backward();
  auto y_all = reference->forward(x_all.detach());  // running statistics updated twice on both sides

  SyncBatchNormOptions bn_options{3};
  SyncBatchNorm sync(bn_options, comm);
  sync->to(torch::kFloat64);
  auto x = inputs[comm->rank()].clone().requires_grad_(true);
  (sync->forward(x) * upstream[comm->rank()]).sum().backward();
  auto y = sync->forward(x.detach());
  EXPECT_TRUE(test::AllClose(y, y_all.narrow(0, 4 * comm->rank(), 4), 1e-8, 1e-8));
  EXPECT_TRUE(test::AllClose(x.grad(), x_all.grad().narrow(0, 4 * comm->rank(), 4), 1e-8, 1e-8));
  EXPECT_TRUE(test::AllClose(sync->running_var, reference->running_var, 1e-8, 1e-12));
}

}  // namespace
}  // namespace mgca::comm
