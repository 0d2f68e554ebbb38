#include "mgca/eval/probe.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "mgca/util/error.h"
#include "mgca/util/rng.h"

namespace mgca::eval {

namespace {

constexpr uint64_t kProbeStream = 0x50524F42ULL;  // "PROB"

// Targets as tensors: multi-label Y [n, L] float (NaN → 0) with mask [n, L];
// multi-class: the labelled rows' indices and classes [m].
struct TensorTargets {
  TaskKind kind;
  torch::Tensor y;     // [n, L] float or [m] int64
  torch::Tensor mask;  // [n, L] float (multi-label only)
  torch::Tensor rows;  // [m] int64 rows kept (multi-class only)
};

TensorTargets to_tensors(const Targets& targets) {
  TensorTargets out{targets.kind, {}, {}, {}};
  if (targets.kind == TaskKind::MultiLabel) {
    auto y = from_matrix(targets.multilabel);
    out.mask = (~torch::isnan(y)).to(torch::kFloat32);
    out.y = torch::nan_to_num(y, 0.0);
  } else {
    std::vector<int64_t> rows, classes;
    for (size_t i = 0; i < targets.classes.size(); ++i) {
      if (targets.classes[i] >= 0) {
        rows.push_back(static_cast<int64_t>(i));
        classes.push_back(targets.classes[i]);
      }
    }
    out.rows = torch::tensor(rows, torch::kInt64);
    out.y = torch::tensor(classes, torch::kInt64);
  }
  return out;
}

torch::Tensor loss_of(const torch::Tensor& logits, const TensorTargets& t,
                      const torch::Tensor& index = {}) {
  if (t.kind == TaskKind::MultiLabel) {
    auto y = index.defined() ? t.y.index_select(0, index) : t.y;
    auto mask = index.defined() ? t.mask.index_select(0, index) : t.mask;
    auto per = torch::binary_cross_entropy_with_logits(logits, y, {}, {},
                                                       at::Reduction::None);
    return (per * mask).sum() / mask.sum().clamp_min(1.0);
  }
  auto y = index.defined() ? t.y.index_select(0, index) : t.y;
  return torch::nn::functional::cross_entropy(logits, y);
}

void check_features(const torch::Tensor& features, int64_t rows, const char* what) {
  MGCA_CHECK(features.defined() && features.dim() == 2,
             "linear probe: {} features must be [n, d], got {} dims", what,
             features.defined() ? features.dim() : -1);
  MGCA_CHECK(features.size(0) == rows, "linear probe: {} features have {} rows but {} targets",
             what, features.size(0), rows);
  auto finite = torch::isfinite(features).all(1);
  if (!finite.all().item<bool>()) {
    const int64_t bad = (~finite).nonzero()[0][0].item<int64_t>();
    MGCA_FAIL("linear probe: {} features of row {} are not finite", what, bad);
  }
}

}  // namespace

Matrix to_matrix(const torch::Tensor& tensor) {
  MGCA_CHECK(tensor.dim() == 2, "expected a 2-D tensor, got {} dims", tensor.dim());
  auto t = tensor.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  Matrix m(t.size(0), t.size(1));
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + t.numel(), m.values.begin());
  return m;
}

torch::Tensor from_matrix(const Matrix& matrix) {
  auto t = torch::empty({matrix.rows, matrix.cols}, torch::kFloat64);
  std::copy(matrix.values.begin(), matrix.values.end(), t.data_ptr<double>());
  return t.to(torch::kFloat32);
}

torch::Tensor ProbeModel::logits(const torch::Tensor& features) const {
  auto x = (features.to(torch::kFloat32) - mean) * scale;
  return torch::addmm(bias, x, weight.t());
}

double probe_loss(const ProbeModel& model, const torch::Tensor& features, const Targets& targets) {
  torch::NoGradGuard no_grad;
  const auto t = to_tensors(targets);
  auto x = features;
  if (t.kind == TaskKind::MultiClass) x = x.index_select(0, t.rows);
  return loss_of(model.logits(x), t).item<double>();
}

Matrix probe_scores(const ProbeModel& model, const torch::Tensor& features) {
  torch::NoGradGuard no_grad;
  auto logits = model.logits(features);
  auto p = model.kind == TaskKind::MultiLabel ? torch::sigmoid(logits) : torch::softmax(logits, 1);
  return to_matrix(p);
}

ProbeFit train_linear_probe(const torch::Tensor& train_features, const Targets& train,
                            const torch::Tensor& val_features, const Targets& val,
                            const ProbeOptions& options, uint64_t seed) {
  MGCA_CHECK(train.kind == val.kind && train.names == val.names,
             "linear probe: the training and validation targets describe different tasks");
  MGCA_CHECK(options.batch_size > 0 && options.max_epochs > 0 && options.patience > 0 &&
                 options.min_steps_per_epoch >= 0 && options.learning_rate > 0.0,
             "linear probe: batch size, epochs, patience and learning rate must be positive");
  check_features(train_features, train.size(), "training");
  check_features(val_features, val.size(), "validation");
  MGCA_CHECK(train_features.size(1) == val_features.size(1),
             "linear probe: training features have {} dims but validation features {}",
             train_features.size(1), val_features.size(1));

  const TensorTargets train_t = to_tensors(train);
  const TensorTargets val_t = to_tensors(val);
  torch::Tensor x_train = train_features.to(torch::kFloat32);
  torch::Tensor x_val = val_features.to(torch::kFloat32);
  if (train.kind == TaskKind::MultiClass) {
    x_train = x_train.index_select(0, train_t.rows);
    x_val = x_val.index_select(0, val_t.rows);
  }
  const int64_t n = x_train.size(0), d = x_train.size(1);
  const int64_t classes = static_cast<int64_t>(train.names.size());
  MGCA_CHECK(n > 0, "linear probe: no labelled training rows");
  MGCA_CHECK(x_val.size(0) > 0, "linear probe: no labelled validation rows");
  if (train.kind == TaskKind::MultiLabel) {
    MGCA_CHECK(train_t.mask.sum().item<double>() > 0, "linear probe: every training label is missing");
  }

  ProbeFit fit;
  ProbeModel& model = fit.model;
  model.kind = train.kind;
  if (options.standardize) {
    model.mean = x_train.mean(0);
    auto std = x_train.std(0, /*unbiased=*/false);
    // A feature constant over the training rows carries no signal: leave it unscaled.
    model.scale = torch::where(std > 1e-6 * (1.0 + model.mean.abs()), 1.0 / std,
                               torch::ones_like(std));
  } else {
    model.mean = torch::zeros({d});
    model.scale = torch::ones({d});
  }
  const auto xs_train = (x_train - model.mean) * model.scale;

  auto weight = torch::zeros({classes, d}, torch::requires_grad());
  auto bias = torch::zeros({classes}, torch::requires_grad());
  torch::optim::AdamW optimizer(
      {weight, bias}, torch::optim::AdamWOptions(options.learning_rate)
                          .betas({0.9, 0.999})
                          .weight_decay(options.weight_decay));

  const int64_t batches_per_pass = (n + options.batch_size - 1) / options.batch_size;
  const int64_t steps_per_epoch = std::max(batches_per_pass, options.min_steps_per_epoch);
  double best = std::numeric_limits<double>::infinity();
  torch::Tensor best_weight = weight.detach().clone(), best_bias = bias.detach().clone();
  int64_t since_best = 0, pass = 0, cursor = n;
  std::vector<int64_t> order;
  for (int64_t epoch = 0; epoch < options.max_epochs; ++epoch) {
    double loss_sum = 0.0;
    for (int64_t step = 0; step < steps_per_epoch; ++step) {
      // Batches walk a seeded permutation; a new one starts when it runs out.
      if (cursor >= n) {
        order = util::permutation(n, util::make_key({seed, kProbeStream, static_cast<uint64_t>(pass++)}));
        cursor = 0;
      }
      const int64_t take = std::min(options.batch_size, n - cursor);
      auto index = torch::tensor(std::vector<int64_t>(order.begin() + cursor, order.begin() + cursor + take),
                                 torch::kInt64);
      cursor += take;
      if (options.record_batches) {
        fit.history.batches.emplace_back(order.begin() + cursor - take, order.begin() + cursor);
      }
      auto logits = torch::addmm(bias, xs_train.index_select(0, index), weight.t());
      auto loss = loss_of(logits, train_t, index);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      loss_sum += loss.item<double>();
      ++fit.history.steps;
    }
    fit.history.train_loss.push_back(loss_sum / static_cast<double>(steps_per_epoch));
    double val_loss;
    {
      torch::NoGradGuard no_grad;
      model.weight = weight.detach();
      model.bias = bias.detach();
      val_loss = loss_of(model.logits(x_val), val_t).item<double>();
    }
    fit.history.val_loss.push_back(val_loss);
    if (val_loss < best) {
      best = val_loss;
      best_weight = weight.detach().clone();
      best_bias = bias.detach().clone();
      fit.history.best_epoch = epoch;
      since_best = 0;
    } else if (++since_best >= options.patience) {
      fit.history.stopped_early = true;
      break;
    }
  }
  model.weight = best_weight;
  model.bias = best_bias;
  return fit;
}

}  // namespace mgca::eval
