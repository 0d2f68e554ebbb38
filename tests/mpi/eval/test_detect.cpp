// The detection protocol under mpirun -np 1, 2, 4: each rank detects on its
// share and every rank receives all images' detections in image order (equal
// to one process detecting everything, ranks without images included), and
// every rank ends a training run with the same figures.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <numeric>

#include "mgca/comm/communicator.h"
#include "mgca/eval/detect_protocol.h"
#include "mgca/model/resnet.h"

namespace mgca::eval {
namespace {

// Bright squares of varying place on noise; the box is the square.
BoxedImages boxed_squares(int64_t n, int64_t size, uint64_t seed) {
  BoxedImages out;
  out.count = n;
  out.size = size;
  torch::manual_seed(seed);
  auto noise = (torch::rand({n, size, size}) * 60).to(torch::kUInt8).contiguous();
  out.images.assign(noise.data_ptr<uint8_t>(), noise.data_ptr<uint8_t>() + n * size * size);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t x0 = (i * 5) % (size / 2), y0 = (i * 3) % (size / 2), side = size / 3;
    for (int64_t y = y0; y < y0 + side; ++y) {
      for (int64_t x = x0; x < x0 + side; ++x) out.images[static_cast<size_t>((i * size + y) * size + x)] = 200;
    }
    out.boxes.push_back({{static_cast<float>(x0), static_cast<float>(y0), static_cast<float>(x0 + side),
                          static_cast<float>(y0 + side)}});
  }
  return out;
}

TEST(DetectSplit, EveryRankReceivesAllDetectionsInImageOrder) {
  auto comm = comm::Communicator::world();
  torch::manual_seed(5);  // the same encoder and head on every rank
  auto encoder = std::make_shared<model::ResNetImpl>(model::ResNetConfig::tiny());
  DetectionNet net(encoder);
  YoloConstants everything;
  everything.conf_threshold = 0.0;  // every anchor is a candidate: many boxes, the 100 cap reached
  auto single = comm::Communicator::single();
  for (const int64_t n : {3, 7}) {  // 3 images: a rank without any at np 4
    const auto split = boxed_squares(n, 64, 9);
    const auto mine = detect_split(*comm, net, split, 1, everything);
    const auto alone = detect_split(*single, net, split, 1, everything);
    ASSERT_EQ(mine.size(), static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const auto& a = mine[static_cast<size_t>(i)];
      const auto& b = alone[static_cast<size_t>(i)];
      ASSERT_EQ(a.size(), b.size()) << "image " << i;
      EXPECT_EQ(a.size(), 100u) << "image " << i;
      for (size_t k = 0; k < a.size(); ++k) {
        EXPECT_FLOAT_EQ(a[k].box.x0, b[k].box.x0);
        EXPECT_FLOAT_EQ(a[k].box.y1, b[k].box.y1);
        EXPECT_DOUBLE_EQ(a[k].score, b[k].score);
      }
    }
  }
}

TEST(Detect, EveryRankEndsWithTheSameFigures) {
  auto comm = comm::Communicator::world();
  torch::manual_seed(5);
  auto encoder = std::make_shared<model::ResNetImpl>(model::ResNetConfig::tiny());
  const auto train = boxed_squares(11, 64, 1), val = boxed_squares(5, 64, 2), test = boxed_squares(6, 64, 3);
  DetectOptions options;
  options.batch_size = 4;  // 11 rows: a last batch of 3, fewer rows than ranks at np 4
  options.max_epochs = 2;
  options.patience = 2;
  std::vector<int64_t> rows(11);
  std::iota(rows.begin(), rows.end(), 0);
  const auto run = train_detector(*comm, encoder, train, rows, val, test, options, 42);
  EXPECT_EQ(comm->all_reduce_scalar(run.test_value, comm::ReduceOp::Max),
            comm->all_reduce_scalar(run.test_value, comm::ReduceOp::Min));
  EXPECT_EQ(comm->all_reduce_scalar(static_cast<double>(run.training.best_epoch), comm::ReduceOp::Max),
            static_cast<double>(run.training.best_epoch));
  EXPECT_EQ(run.train_images, 11);
  EXPECT_GE(run.test_value, -1.0);  // mAP, −1: nothing to score
  EXPECT_LE(run.test_value, 1.0);
}

}  // namespace
}  // namespace mgca::eval
