#include "mgca/eval/segment_protocol.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "mgca/eval/downstream.h"
#include "mgca/eval/localization_metrics.h"
#include "mgca/eval/segmentation.h"
#include "mgca/model/vit.h"
#include "mgca/util/error.h"

namespace mgca::eval {
namespace {

// Rows of a split as a normalised float batch and float masks on `device`.
std::pair<torch::Tensor, torch::Tensor> batch_of(const MaskedImages& split, const std::vector<int64_t>& rows,
                                                 torch::Device device) {
  const int64_t s = split.size, n = static_cast<int64_t>(rows.size());
  auto images = torch::empty({n, 1, s, s}, torch::kUInt8);
  auto masks = torch::empty({n, s, s}, torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) {
    const size_t from = static_cast<size_t>(rows[static_cast<size_t>(i)] * s * s);
    std::memcpy(images.data_ptr<uint8_t>() + i * s * s, split.images.data() + from, static_cast<size_t>(s * s));
    std::memcpy(masks.data_ptr<uint8_t>() + i * s * s, split.masks.data() + from, static_cast<size_t>(s * s));
  }
  return {normalise_downstream_images(images.to(device)), masks.to(device).to(torch::kFloat32)};
}

torch::Device device_of(SegmentationNet& net) { return net->parameters().front().device(); }

// Mean validation loss over the split's batches (each rank its share), summed over ranks.
double validation_loss(comm::Communicator& comm, SegmentationNet& net, const MaskedImages& val, int64_t batch) {
  torch::NoGradGuard no_grad;
  net->eval();
  double sum = 0, batches = 0;
  const auto rows = all_rows(val.count);
  for (size_t first = 0; first < rows.size(); first += static_cast<size_t>(batch)) {
    const std::vector<int64_t> global(rows.begin() + static_cast<std::ptrdiff_t>(first),
                                      rows.begin() + static_cast<std::ptrdiff_t>(std::min(rows.size(), first + batch)));
    const auto mine = rank_share(global, comm.rank(), comm.size());
    if (mine.empty()) continue;
    const auto [x, y] = batch_of(val, mine, device_of(net));
    sum += mixed_segmentation_loss(net->forward(x), y).item<double>();
    batches += 1;
  }
  net->train();
  return comm.all_reduce_scalar(sum, comm::ReduceOp::Sum) /
         std::max(1.0, comm.all_reduce_scalar(batches, comm::ReduceOp::Sum));
}

// Test Dice, and the two parts it averages: images with a lesion and images
// without one (those score 1 for an empty prediction, else 0).
struct TestDice {
  double mean = 0.0, lesion_mean = 0.0, empty_correct = 0.0;
  int64_t lesion_images = 0;
};

TestDice test_dice(comm::Communicator& comm, SegmentationNet& net, const MaskedImages& test, int64_t batch) {
  torch::NoGradGuard no_grad;
  net->eval();
  const auto mine = rank_share(all_rows(test.count), comm.rank(), comm.size());
  double lesion_sum = 0, empty_sum = 0, lesion_images = 0;
  for (size_t first = 0; first < mine.size(); first += static_cast<size_t>(batch)) {
    const std::vector<int64_t> rows(mine.begin() + static_cast<std::ptrdiff_t>(first),
                                    mine.begin() + static_cast<std::ptrdiff_t>(std::min(mine.size(), first + batch)));
    const auto [x, y] = batch_of(test, rows, device_of(net));
    // MGCA's threshold: probability > 0.5.
    const auto predicted = (net->forward(x).sigmoid() > 0.5).to(torch::kCPU, torch::kUInt8).contiguous();
    const auto truth = y.to(torch::kCPU, torch::kUInt8).contiguous();
    const int64_t pixels = test.size * test.size;
    for (int64_t i = 0; i < predicted.size(0); ++i) {
      const uint8_t* t = truth.data_ptr<uint8_t>() + i * pixels;
      const double dice = image_dice(predicted.data_ptr<uint8_t>() + i * pixels, t, pixels);
      if (std::any_of(t, t + pixels, [](uint8_t v) { return v != 0; })) {
        lesion_sum += dice;
        lesion_images += 1;
      } else {
        empty_sum += dice;
      }
    }
  }
  net->train();
  lesion_sum = comm.all_reduce_scalar(lesion_sum, comm::ReduceOp::Sum);
  empty_sum = comm.all_reduce_scalar(empty_sum, comm::ReduceOp::Sum);
  lesion_images = comm.all_reduce_scalar(lesion_images, comm::ReduceOp::Sum);
  const double empty_images = static_cast<double>(test.count) - lesion_images;
  TestDice out;
  out.mean = (lesion_sum + empty_sum) / static_cast<double>(test.count);
  out.lesion_mean = lesion_images > 0 ? lesion_sum / lesion_images : 0.0;
  out.empty_correct = empty_images > 0 ? empty_sum / empty_images : 0.0;
  out.lesion_images = static_cast<int64_t>(lesion_images);
  return out;
}

}  // namespace

MaskedImages load_masked_images(const io::Dataset& dataset, int64_t input_size) {
  MGCA_CHECK(dataset.annotations().masks, "dataset '{}' has no masks (segmentation needs a dataset written "
             "with masks: mgca synth, mgca prep --format siim)", dataset.dir().string());
  MaskedImages out;
  out.count = dataset.size();
  out.size = input_size;
  const int64_t S = dataset.image_size(), s = input_size;
  out.images.resize(static_cast<size_t>(out.count * s * s));
  out.masks.resize(out.images.size());
  auto image = torch::empty({1, 1, S, S}, torch::kUInt8), mask = torch::empty({1, 1, S, S}, torch::kUInt8);
  for (int64_t i = 0; i < out.count; ++i) {
    dataset.read_image(i, image.data_ptr<uint8_t>());
    dataset.read_mask(i, mask.data_ptr<uint8_t>());
    torch::Tensor x = image, m = mask;
    if (S != s) {
      x = at::upsample_bilinear2d(image.to(torch::kFloat32), {s, s}, false).round().clamp(0, 255).to(torch::kUInt8);
      m = at::upsample_nearest2d(mask.to(torch::kFloat32), {s, s}).to(torch::kUInt8);
    }
    x = x.contiguous();
    m = m.contiguous();
    std::memcpy(out.images.data() + i * s * s, x.data_ptr<uint8_t>(), static_cast<size_t>(s * s));
    std::memcpy(out.masks.data() + i * s * s, m.data_ptr<uint8_t>(), static_cast<size_t>(s * s));
  }
  return out;
}

HeadRun train_segmenter(comm::Communicator& comm, const std::shared_ptr<model::ImageEncoderImpl>& encoder,
                        const MaskedImages& train, const std::vector<int64_t>& train_rows, const MaskedImages& val,
                        const MaskedImages& test, const SegmentOptions& options, uint64_t seed) {
  check_head_run("segmentation", train_rows.size(), val.count, test.count, options);
  auto net = new_head<SegmentationNet>(encoder, seed);
  const auto trained = train_head(
      comm, *net, net->head_parameters(), train_rows, options, seed, std::nullopt,
      [&](const std::vector<int64_t>& rows) {
        const auto [x, y] = batch_of(train, rows, device_of(net));
        return mixed_segmentation_loss(net->forward(x), y);
      },
      [&] { return validation_loss(comm, net, val, options.batch_size); }, ValidationGoal::Minimise, "segmentation");
  const auto dice = test_dice(comm, net, test, options.batch_size);
  return {dice.mean, static_cast<int64_t>(train_rows.size()), trained,
          {{"test_lesion_dice", dice.lesion_mean},
           {"test_lesion_images", static_cast<double>(dice.lesion_images)},
           {"test_empty_correct", dice.empty_correct}}};
}

}  // namespace mgca::eval
