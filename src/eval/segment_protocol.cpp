#include "mgca/eval/segment_protocol.h"

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "mgca/eval/downstream.h"
#include "mgca/eval/localization_metrics.h"
#include "mgca/eval/segmentation.h"
#include "mgca/model/vit.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"
#include "mgca/util/rng.h"

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

double test_dice(comm::Communicator& comm, SegmentationNet& net, const MaskedImages& test, int64_t batch) {
  torch::NoGradGuard no_grad;
  net->eval();
  const auto mine = rank_share(all_rows(test.count), comm.rank(), comm.size());
  double sum = 0;
  for (size_t first = 0; first < mine.size(); first += static_cast<size_t>(batch)) {
    const std::vector<int64_t> rows(mine.begin() + static_cast<std::ptrdiff_t>(first),
                                    mine.begin() + static_cast<std::ptrdiff_t>(std::min(mine.size(), first + batch)));
    const auto [x, y] = batch_of(test, rows, device_of(net));
    // MGCA's threshold: probability > 0.5.
    const auto predicted = (net->forward(x).sigmoid() > 0.5).to(torch::kCPU, torch::kUInt8).contiguous();
    const auto truth = y.to(torch::kCPU, torch::kUInt8).contiguous();
    const int64_t pixels = test.size * test.size;
    for (int64_t i = 0; i < predicted.size(0); ++i) {
      sum += image_dice(predicted.data_ptr<uint8_t>() + i * pixels, truth.data_ptr<uint8_t>() + i * pixels, pixels);
    }
  }
  net->train();
  return comm.all_reduce_scalar(sum, comm::ReduceOp::Sum) / static_cast<double>(test.count);
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

SegmentRun train_segmenter(comm::Communicator& comm, const std::shared_ptr<model::ImageEncoderImpl>& encoder,
                           const MaskedImages& train, const std::vector<int64_t>& train_rows,
                           const MaskedImages& val, const MaskedImages& test, const SegmentOptions& options,
                           uint64_t seed) {
  MGCA_CHECK(!train_rows.empty() && val.count > 0 && test.count > 0,
             "segmentation: empty split (train rows {}, val {}, test {})", train_rows.size(), val.count, test.count);
  MGCA_CHECK(options.batch_size > 0 && options.max_epochs > 0, "segmentation: batch size and epochs must be positive");
  torch::manual_seed(seed);  // the decoder's initialisation: the same on every rank
  SegmentationNet net(encoder);
  net->to(encoder->parameters().front().device());
  net->train();
  auto parameters = net->decoder_parameters();
  torch::optim::AdamW optimizer(
      parameters, torch::optim::AdamWOptions(options.learning_rate).weight_decay(options.weight_decay).betas({0.9, 0.999}));
  SegmentRun run;
  run.train_images = static_cast<int64_t>(train_rows.size());
  run.best_val_loss = std::numeric_limits<double>::infinity();
  std::vector<torch::Tensor> best;
  int64_t since_best = 0;
  for (int64_t epoch = 0; epoch < options.max_epochs; ++epoch) {
    const auto order = util::permutation(static_cast<int64_t>(train_rows.size()), util::make_key({seed, static_cast<uint64_t>(epoch)}));
    for (size_t first = 0; first < order.size(); first += static_cast<size_t>(options.batch_size)) {
      std::vector<int64_t> global;
      for (size_t k = first; k < std::min(order.size(), first + static_cast<size_t>(options.batch_size)); ++k) {
        global.push_back(train_rows[static_cast<size_t>(order[k])]);
      }
      const auto mine = rank_share(global, comm.rank(), comm.size());
      optimizer.zero_grad();
      double contributing = 0;
      if (!mine.empty()) {
        const auto [x, y] = batch_of(train, mine, device_of(net));
        mixed_segmentation_loss(net->forward(x), y).backward();
        contributing = 1;
      }
      // Average over the ranks that had rows (a short last batch may leave some without).
      const double ranks = comm.all_reduce_scalar(contributing, comm::ReduceOp::Sum);
      for (auto& p : parameters) {
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
        comm.all_reduce(p.mutable_grad(), comm::ReduceOp::Sum);
        p.mutable_grad().div_(ranks);
      }
      optimizer.step();
    }
    ++run.epochs;
    const double loss = validation_loss(comm, net, val, options.batch_size);
    if (loss < run.best_val_loss) {
      run.best_val_loss = loss;
      run.best_epoch = epoch + 1;
      since_best = 0;
      best.clear();
      for (const auto& t : net->parameters()) best.push_back(t.detach().clone());
      for (const auto& t : net->buffers()) best.push_back(t.detach().clone());
    } else if (++since_best >= options.patience) {
      break;
    }
  }
  MGCA_CHECK(!best.empty(), "segmentation: the validation loss was never finite ({} epochs); lower --lr?",
             run.epochs);
  {
    torch::NoGradGuard no_grad;
    size_t k = 0;
    for (auto& t : net->parameters()) t.copy_(best[k++]);
    for (auto& t : net->buffers()) t.copy_(best[k++]);
  }
  run.test_dice = test_dice(comm, net, test, options.batch_size);
  return run;
}

void run_segment_grid(comm::Communicator& comm, const std::string& model_name,
                      const std::shared_ptr<model::ImageEncoderImpl>& encoder, const std::string& dataset_name,
                      const MaskedImages& train, const MaskedImages& val, const MaskedImages& test,
                      const SegmentGridOptions& options, Results& results) {
  for (const double fraction : options.fractions) {
    MGCA_CHECK(fraction > 0 && fraction <= 1, "segmentation: label fraction {} is not in (0, 1]", fraction);
    ResultEntry entry;
    entry.method = model_name;
    entry.dataset = dataset_name;
    entry.setting = fmt::format("{:g}%", fraction * 100);
    entry.metric = "Dice";
    entry.details["runs"] = nlohmann::json::array();
    for (int64_t k = 0; k < options.seeds; ++k) {
      const uint64_t seed = options.base_seed + static_cast<uint64_t>(k);
      const auto rows = fraction_rows(train.count, fraction, seed);
      const auto run = train_segmenter(comm, encoder, train, rows, val, test, options.train, seed);
      log::info("segment {} | {} | {} train images, seed {}: Dice {:.4f} (best epoch {} of {})", model_name,
                entry.setting, run.train_images, seed, run.test_dice, run.best_epoch, run.epochs);
      entry.values.push_back(run.test_dice);
      entry.seeds.push_back(seed);
      entry.details["runs"].push_back({{"seed", seed}, {"train_images", run.train_images}, {"epochs", run.epochs},
                                       {"best_epoch", run.best_epoch}, {"best_val_loss", run.best_val_loss}});
    }
    results.add(std::move(entry));
  }
}

}  // namespace mgca::eval
