#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/comm/agreement.h"
#include "mgca/comm/communicator.h"
#include "mgca/comm/differentiable.h"
#include "mgca/comm/grad_sync.h"
#include "mgca/comm/nccl.h"
#include "mgca/comm/sync_batchnorm.h"
#include "mgca/util/error.h"
#include "support/tensor_checks.h"

namespace mgca::comm {
namespace {

TEST(BlockRange, BlocksTileTheRangeInOrderAndDifferByAtMostOne) {
  for (int64_t n : {0, 1, 7, 100, 101}) {
    for (int world : {1, 2, 3, 4, 8}) {
      int64_t next = 0, smallest = n, largest = 0;
      for (int rank = 0; rank < world; ++rank) {
        const BlockRange block = block_of(n, rank, world);
        EXPECT_EQ(block.begin, next) << "n " << n << " rank " << rank << " of " << world;
        next = block.end;
        smallest = std::min(smallest, block.size());
        largest = std::max(largest, block.size());
      }
      EXPECT_EQ(next, n);
      EXPECT_LE(largest - smallest, 1);
    }
  }
  EXPECT_THROW(block_of(10, 2, 2), Error);
}

TEST(SingleCommunicator, AgreementHelpersPassAndFailOnOneRank) {
  auto comm = Communicator::single();
  check_ranks_agree(*comm, "values", {1, 2, 3});  // one rank always agrees with itself
  int ran = 0;
  run_on_every_rank(*comm, "step", [&] { ++ran; });
  EXPECT_EQ(ran, 1);
  try {
    run_on_every_rank(*comm, "writing", [] { throw std::runtime_error("disk full"); });
    ADD_FAILURE() << "a failing body did not raise";
  } catch (const CollectiveError& e) {
    EXPECT_FALSE(e.echo());
    EXPECT_NE(e.message().find("writing: disk full"), std::string::npos) << e.message();
  }
}

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
  SyncBatchNormOptions bn_options{5};
  SyncBatchNorm sync(bn_options, Communicator::single());
  torch::nn::BatchNorm1d reference(5);
  auto x = torch::randn({8, 5, 3});
  EXPECT_TRUE(test::AllClose(sync->forward(x), reference->forward(x), 1e-6, 1e-6));
  sync->eval();
  reference->eval();
  EXPECT_TRUE(test::AllClose(sync->forward(x), reference->forward(x), 1e-6, 1e-6));
}

}  // namespace
}  // namespace mgca::comm

namespace mgca::comm {
namespace {

TEST(Backend, ParseNamesAndRejectUnknown) {
  EXPECT_EQ(parse_backend("auto"), Backend::Auto);
  EXPECT_EQ(parse_backend("mpi"), Backend::Mpi);
  EXPECT_EQ(parse_backend("nccl"), Backend::Nccl);
  for (Backend b : {Backend::Auto, Backend::Mpi, Backend::Nccl}) EXPECT_EQ(parse_backend(backend_name(b)), b);
  try {
    parse_backend("gloo");
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("unknown communication backend 'gloo' (valid: auto, mpi, nccl)"),
              std::string::npos)
        << error.what();
  }
}

TEST(SingleCommunicator, IntoVariantsAndArgumentChecks) {
  auto comm = Communicator::single();
  auto x = torch::arange(6, torch::kFloat32).reshape({3, 2});
  auto out = torch::zeros({3, 2});
  comm->all_gather_into(out, x);
  EXPECT_TRUE(out.equal(x));
  out.zero_();
  comm->reduce_scatter_into(out, x, ReduceOp::Avg);
  EXPECT_TRUE(out.equal(x));
  EXPECT_TRUE(comm->all_gather(torch::tensor(2.5)).equal(torch::tensor({2.5})));
  auto ints = torch::ones({2}, torch::kInt64);
  EXPECT_THROW(comm->all_reduce(ints, ReduceOp::Avg), Error);  // same rule as the world communicator
  auto wrong = torch::zeros({2, 2});
  EXPECT_THROW(comm->all_gather_into(wrong, x), Error);
  EXPECT_EQ(comm->device_index(), -1);
}

TEST(SingleCommunicator, GradSyncKeepsLocalGradients) {
  torch::manual_seed(3);
  torch::nn::Linear layer(4, 3);
  GradSync sync(layer->named_parameters(), Communicator::single());
  auto x = torch::randn({5, 4});
  layer->forward(x).sum().backward();
  auto expected_w = layer->weight.grad().clone();
  sync.finalize();
  EXPECT_TRUE(layer->weight.grad().equal(expected_w));
  EXPECT_EQ(sync.stats().steps, 1);
}

TEST(Nccl, RawLayerReportsNoGpuClearly) {
  std::string why;
  const int count = nccl::device_count(&why);
  if (count > 0) GTEST_SKIP() << "a CUDA device is visible";
  EXPECT_FALSE(why.empty());
  // Either the toolkit is missing from the build, or there is no usable GPU.
  EXPECT_TRUE(why.find("cudaGetDeviceCount") != std::string::npos ||
              why.find("no CUDA device") != std::string::npos ||
              why.find("built without the CUDA toolkit") != std::string::npos)
      << why;
  EXPECT_EQ(nccl::element_size(nccl::DataType::BFloat16), 2u);
  EXPECT_STREQ(nccl::data_type_name(nccl::DataType::Int64), "int64");
}

}  // namespace
}  // namespace mgca::comm
