#include "mgca/eval/downstream.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <nlohmann/json.hpp>

#include "mgca/model/vit.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"
#include "mgca/util/rng.h"

namespace mgca::eval {

std::vector<torch::Tensor> resnet_pyramid(model::ResNetImpl& resnet, const torch::Tensor& images) {
  const auto weight = model::fold_input_channels(resnet.conv1->weight, images.size(1));
  auto x = resnet.bn1->forward(at::conv2d(images, weight, {}, 2, 3)).relu_();
  std::vector<torch::Tensor> features{x};
  x = at::max_pool2d(x, 3, 2, 1);
  for (auto& layer : resnet.layers) {
    for (size_t i = 0; i < layer->size(); ++i) x = layer->ptr<model::BottleneckImpl>(i)->forward(x);
    features.push_back(x);
  }
  return features;
}

int64_t downstream_input_size(const model::ImageEncoderImpl& encoder, int64_t requested) {
  if (requested > 0) return requested;
  if (const auto* vit = dynamic_cast<const model::ViTImpl*>(&encoder)) return vit->config().image_size;
  return 224;
}

torch::Tensor normalise_downstream_images(const torch::Tensor& images_uint8) {
  return (images_uint8.to(torch::kFloat32) / 255.0 - 0.5) / 0.5;
}

std::vector<int64_t> all_rows(int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

std::vector<int64_t> rank_share(const std::vector<int64_t>& rows, int rank, int size) {
  const size_t n = rows.size();
  return {rows.begin() + static_cast<std::ptrdiff_t>(n * static_cast<size_t>(rank) / static_cast<size_t>(size)),
          rows.begin() + static_cast<std::ptrdiff_t>(n * static_cast<size_t>(rank + 1) / static_cast<size_t>(size))};
}

FrozenEncoderNet::FrozenEncoderNet(std::shared_ptr<model::ImageEncoderImpl> encoder, const char* task)
    : encoder_(std::move(encoder)) {
  MGCA_CHECK(encoder_ != nullptr, "{}: no encoder", task);
  for (auto& parameter : encoder_->parameters()) parameter.set_requires_grad(false);
  encoder_->eval();
  register_module("encoder", encoder_);
}

void FrozenEncoderNet::train(bool on) {
  torch::nn::Module::train(on);
  encoder_->eval();
}

std::vector<torch::Tensor> FrozenEncoderNet::head_parameters() {
  std::vector<torch::Tensor> out;
  for (const auto& item : named_parameters()) {
    if (item.key().rfind("encoder.", 0) != 0) out.push_back(item.value());
  }
  return out;
}

std::vector<int64_t> fraction_rows(int64_t n, double fraction, uint64_t seed) {
  MGCA_CHECK(fraction > 0 && fraction <= 1, "label fraction {} is not in (0, 1]", fraction);
  const auto order = util::permutation(n, util::make_key({seed, 0x5e6u, static_cast<uint64_t>(std::llround(fraction * 1e6))}));
  const int64_t keep =
      fraction >= 1 ? n : std::max<int64_t>(1, static_cast<int64_t>(std::floor(fraction * static_cast<double>(n))));
  std::vector<int64_t> rows(order.begin(), order.begin() + keep);
  std::sort(rows.begin(), rows.end());
  return rows;
}

void check_head_run(const std::string& task, size_t train_rows, int64_t val_count, int64_t test_count,
                    const HeadTraining& options) {
  MGCA_CHECK(train_rows > 0 && val_count > 0 && test_count > 0, "{}: empty split (train rows {}, val {}, test {})",
             task, train_rows, val_count, test_count);
  MGCA_CHECK(options.batch_size > 0 && options.max_epochs > 0, "{}: batch size and epochs must be positive", task);
}

HeadTrainingRun train_head(comm::Communicator& comm, torch::nn::Module& net, std::vector<torch::Tensor> parameters,
                           const std::vector<int64_t>& train_rows, const HeadTraining& options, uint64_t seed,
                           std::optional<uint64_t> order_stream,
                           const std::function<torch::Tensor(const std::vector<int64_t>& rows)>& batch_loss,
                           const std::function<double()>& validate, ValidationGoal goal, const std::string& task) {
  torch::optim::AdamW optimizer(
      parameters, torch::optim::AdamWOptions(options.learning_rate).weight_decay(options.weight_decay).betas({0.9, 0.999}));
  const bool maximise = goal == ValidationGoal::Maximise;
  HeadTrainingRun run;
  run.best_validation = maximise ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  const auto batch = static_cast<size_t>(options.batch_size);
  std::vector<torch::Tensor> best;
  int64_t since_best = 0;
  for (int64_t epoch = 0; epoch < options.max_epochs; ++epoch) {
    const uint64_t key = order_stream ? util::make_key({seed, static_cast<uint64_t>(epoch), *order_stream})
                                      : util::make_key({seed, static_cast<uint64_t>(epoch)});
    const auto order = util::permutation(static_cast<int64_t>(train_rows.size()), key);
    for (size_t first = 0; first < order.size(); first += batch) {
      std::vector<int64_t> global;
      for (size_t k = first; k < std::min(order.size(), first + batch); ++k) {
        global.push_back(train_rows[static_cast<size_t>(order[k])]);
      }
      const auto mine = rank_share(global, comm.rank(), comm.size());
      optimizer.zero_grad();
      double contributing = 0;
      if (!mine.empty()) {
        batch_loss(mine).backward();
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
    const double score = validate();
    if (maximise ? score > run.best_validation : score < run.best_validation) {
      run.best_validation = score;
      run.best_epoch = epoch + 1;
      since_best = 0;
      best.clear();
      for (const auto& t : net.parameters()) best.push_back(t.detach().clone());
      for (const auto& t : net.buffers()) best.push_back(t.detach().clone());
    } else if (++since_best >= options.patience) {
      break;
    }
  }
  MGCA_CHECK(!best.empty(), "{}: the validation figure was never finite ({} epochs); lower --lr?", task, run.epochs);
  torch::NoGradGuard no_grad;
  size_t k = 0;
  for (auto& t : net.parameters()) t.copy_(best[k++]);
  for (auto& t : net.buffers()) t.copy_(best[k++]);
  return run;
}

void run_fraction_grid(const std::string& task, const std::string& model_name, const std::string& dataset_name,
                       const std::string& metric, const std::string& validation_key, const FractionGrid& grid,
                       int64_t train_count,
                       const std::function<HeadRun(uint64_t seed, const std::vector<int64_t>& rows)>& run,
                       Results& results) {
  for (const double fraction : grid.fractions) {
    ResultEntry entry;
    entry.method = model_name;
    entry.dataset = dataset_name;
    entry.setting = fmt::format("{:g}%", fraction * 100);
    entry.metric = metric;
    entry.details["runs"] = nlohmann::json::array();
    for (int64_t k = 0; k < grid.seeds; ++k) {
      const uint64_t seed = grid.base_seed + static_cast<uint64_t>(k);
      const auto rows = fraction_rows(train_count, fraction, seed);
      const auto result = run(seed, rows);
      log::info("{} {} | {} | {} train images, seed {}: {} {:.4f} (best epoch {} of {})", task, model_name,
                entry.setting, result.train_images, seed, metric, result.test_value, result.training.best_epoch,
                result.training.epochs);
      entry.values.push_back(result.test_value);
      entry.seeds.push_back(seed);
      nlohmann::json details = {{validation_key, result.training.best_validation},
                                {"seed", seed},
                                {"train_images", result.train_images},
                                {"epochs", result.training.epochs},
                                {"best_epoch", result.training.best_epoch}};
      for (const auto& [key, value] : result.details) {
        if (value == std::floor(value) && std::abs(value) < 9e15) {
          details[key] = static_cast<int64_t>(value);
        } else {
          details[key] = value;
        }
      }
      entry.details["runs"].push_back(std::move(details));
    }
    results.add(std::move(entry));
  }
}

}  // namespace mgca::eval
