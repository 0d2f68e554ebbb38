// Distributed feature extraction under mpirun -np 1, 2, 4: uneven shards,
// ranks without samples, rows gathered on rank 0 in sample order, and a
// failing rank ending the extraction on every rank instead of hanging.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "mgca/comm/communicator.h"
#include "mgca/eval/features.h"
#include "mgca/util/error.h"
#include "support/world.h"

namespace mgca::eval {
namespace {

using test::world;

// Output rows as a function of the global sample index alone.
torch::Tensor expected_a(int64_t begin, int64_t count) {
  auto i = torch::arange(begin, begin + count, torch::kFloat64).unsqueeze(1);
  return torch::cat({i, i * 2.0 + 1.0, torch::sin(i)}, 1).to(torch::kFloat32);
}
torch::Tensor expected_b(int64_t begin, int64_t count) {
  return torch::arange(begin, begin + count, torch::kFloat32).unsqueeze(1).mul(-1.0);
}

TEST(Extract, RowsArriveInSampleOrderOnRankZero) {
  auto comm = world();
  for (int64_t n : {0, 1, 2, 3, 7, 13, 64}) {
    for (int64_t batch : {1, 3, 100}) {
      const auto [begin, end] = comm::block_of(n, comm->rank(), comm->size());
      int64_t seen = 0;
      const auto out = distributed_extract(
          *comm, n, {3, 1},
          [&, begin = begin, end = end](int64_t start, int64_t count) {
            // Only this rank's shard is ever asked for, in order.
            EXPECT_EQ(start, begin + seen);
            EXPECT_LE(start + count, end);
            seen += count;
            return std::vector<torch::Tensor>{expected_a(start, count), expected_b(start, count)};
          },
          ExtractOptions{batch, "test"});
      EXPECT_EQ(seen, end - begin) << "n " << n << " batch " << batch;
      if (comm->rank() == 0) {
        ASSERT_EQ(out.size(), 2u);
        EXPECT_TRUE(torch::equal(out[0], expected_a(0, n))) << "n " << n << " batch " << batch;
        EXPECT_TRUE(torch::equal(out[1], expected_b(0, n))) << "n " << n << " batch " << batch;
      } else {
        EXPECT_FALSE(out[0].defined());
      }
    }
  }
}

TEST(Extract, ShardsAreContiguousAndCoverEverything) {
  for (int world_size : {1, 2, 3, 4, 7}) {
    for (int64_t n : {0, 1, 5, 10, 11}) {
      int64_t next = 0, smallest = n, largest = 0;
      for (int r = 0; r < world_size; ++r) {
        const auto [b, e] = comm::block_of(n, r, world_size);
        EXPECT_EQ(b, next);
        next = e;
        smallest = std::min(smallest, e - b);
        largest = std::max(largest, e - b);
      }
      EXPECT_EQ(next, n);
      EXPECT_LE(largest - smallest, 1);
    }
  }
}

TEST(Extract, AFailingRankStopsEveryRank) {
  auto comm = world();
  const int last = comm->size() - 1;
  try {
    distributed_extract(*comm, 20, {2}, [&](int64_t start, int64_t count) {
      if (comm->rank() == last) MGCA_FAIL("cannot read sample {}", start);
      return std::vector<torch::Tensor>{torch::zeros({count, 2})};
    });
    FAIL() << "no error";
  } catch (const Error& error) {
    const std::string text = error.what();
    if (comm->rank() == last) {
      EXPECT_NE(text.find("cannot read sample"), std::string::npos) << text;
    } else {
      EXPECT_NE(text.find("another rank failed"), std::string::npos) << text;
    }
  }
  // A wrong shape is reported with the sample range.
  try {
    distributed_extract(*comm, 8, {2}, [&](int64_t, int64_t count) {
      return std::vector<torch::Tensor>{torch::zeros({count, 3})};
    });
    FAIL() << "no error";
  } catch (const Error& error) {
    const std::string text = error.what();
    EXPECT_TRUE(text.find("expected [") != std::string::npos ||
                text.find("another rank failed") != std::string::npos)
        << text;
  }
}

}  // namespace
}  // namespace mgca::eval
