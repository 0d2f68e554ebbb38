#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/comm/communicator.h"
#include "mgca/comm/differentiable.h"
#include "mgca/comm/sync_batchnorm.h"
#include "support/tensor_checks.h"

namespace mgca::comm {
namespace {

TEST(SingleCommunicator, CollectivesAreIdentities) {
  auto comm = Communicator::single();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  auto t = torch::randn({3, 4});
  auto copy = t.clone();
  comm->all_reduce(t, ReduceOp::Avg);
  EXPECT_TRUE(t.equal(copy));
  EXPECT_TRUE(comm->all_gather(t).equal(copy));
  EXPECT_TRUE(comm->reduce_scatter(t).equal(copy));
  EXPECT_TRUE(comm->any(true));
  EXPECT_FALSE(comm->any(false));
}

TEST(SingleCommunicator, GatherWithGradPassesGradientThrough) {
  auto x = torch::randn({4, 2}, torch::requires_grad());
  auto y = all_gather_with_grad(x, Communicator::single());
  (y * 3).sum().backward();
  EXPECT_TRUE(x.grad().equal(torch::full({4, 2}, 3.0)));
}

TEST(SingleCommunicator, SyncBatchNormIsBatchNorm) {
  SyncBatchNorm sync(SyncBatchNormOptions{5}, Communicator::single());
  torch::nn::BatchNorm1d reference(5);
  auto x = torch::randn({8, 5, 3});
  EXPECT_TRUE(test::AllClose(sync->forward(x), reference->forward(x), 1e-6, 1e-6));
  sync->eval();
  reference->eval();
  EXPECT_TRUE(test::AllClose(sync->forward(x), reference->forward(x), 1e-6, 1e-6));
}

}  // namespace
}  // namespace mgca::comm
