// The segmentation protocol under mpirun -np 1, 2, 4: every rank ends with
// the same decoder, hence the same best epoch and test Dice, also when a
// short last batch leaves some ranks without rows.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <numeric>

#include "mgca/comm/communicator.h"
#include "mgca/eval/segment_protocol.h"
#include "mgca/model/resnet.h"

namespace mgca::eval {
namespace {

// Squares of varying place on noise; the mask is the square.
MaskedImages squares(int64_t n, int64_t size, uint64_t seed) {
  MaskedImages out;
  out.count = n;
  out.size = size;
  torch::manual_seed(seed);
  auto noise = (torch::rand({n, size, size}) * 60).to(torch::kUInt8).contiguous();
  out.images.assign(noise.data_ptr<uint8_t>(), noise.data_ptr<uint8_t>() + n * size * size);
  out.masks.assign(out.images.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t x0 = (i * 5) % (size / 2), y0 = (i * 3) % (size / 2);
    for (int64_t y = y0; y < y0 + size / 3; ++y) {
      for (int64_t x = x0; x < x0 + size / 3; ++x) {
        out.images[static_cast<size_t>((i * size + y) * size + x)] = 200;
        out.masks[static_cast<size_t>((i * size + y) * size + x)] = 1;
      }
    }
  }
  return out;
}

TEST(Segment, EveryRankEndsWithTheSameFigures) {
  auto comm = comm::Communicator::world();
  torch::manual_seed(5);  // the same frozen encoder on every rank
  auto encoder = std::make_shared<model::ResNetImpl>(model::ResNetConfig::tiny());
  const auto train = squares(11, 32, 1), val = squares(5, 32, 2), test = squares(7, 32, 3);
  SegmentOptions options;
  options.batch_size = 4;  // 11 rows: a last batch of 3, fewer rows than ranks at np 4
  options.max_epochs = 3;
  options.patience = 2;
  options.learning_rate = 1e-2;
  std::vector<int64_t> rows(11);
  std::iota(rows.begin(), rows.end(), 0);
  const auto run = train_segmenter(*comm, encoder, train, rows, val, test, options, 42);
  EXPECT_EQ(comm->all_reduce_scalar(run.test_value, comm::ReduceOp::Max),
            comm->all_reduce_scalar(run.test_value, comm::ReduceOp::Min));
  EXPECT_EQ(comm->all_reduce_scalar(static_cast<double>(run.training.best_epoch), comm::ReduceOp::Max),
            static_cast<double>(run.training.best_epoch));
  EXPECT_EQ(run.train_images, 11);
  EXPECT_GE(run.test_value, 0.0);  // Dice
  EXPECT_LE(run.test_value, 1.0);
  EXPECT_TRUE(std::isfinite(run.training.best_validation));
}

}  // namespace
}  // namespace mgca::eval
