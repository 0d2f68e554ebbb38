#include "mgca/train/optimizer.h"

#include <torch/torch.h>

#include <cmath>
#include <set>

#include "mgca/util/error.h"

namespace mgca::train {

Adam::Adam(NamedTensors params, AdamOptions options) : params_(std::move(params)), options_(std::move(options)) {
  std::set<std::string> seen;
  for (const auto& [name, param] : params_) {
    MGCA_CHECK(seen.insert(name).second, "optimizer: parameter '{}' listed twice", name);
    MGCA_CHECK(param.defined() && param.is_floating_point(), "optimizer: parameter '{}' is not a float tensor",
               name);
    bool excluded = false;
    for (const auto& pattern : options_.no_decay) excluded = excluded || name.find(pattern) != std::string::npos;
    decay_.push_back(excluded ? 0.0 : options_.weight_decay);
  }
  state_.resize(params_.size());
}

void Adam::step(double lr) {
  torch::NoGradGuard no_grad;
  const double beta1 = options_.beta1, beta2 = options_.beta2;
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor param = params_[i].second;
    torch::Tensor grad = param.grad();
    if (!grad.defined()) continue;
    State& s = state_[i];
    if (!s.exp_avg.defined()) {
      s.exp_avg = torch::zeros_like(param, torch::MemoryFormat::Preserve);
      s.exp_avg_sq = torch::zeros_like(param, torch::MemoryFormat::Preserve);
    }
    s.step += 1;
    const double wd = decay_[i];
    if (options_.decoupled) {
      param.mul_(1 - lr * wd);
    } else if (wd != 0) {
      grad = grad.add(param, wd);
    }
    s.exp_avg.mul_(beta1).add_(grad, 1 - beta1);
    s.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
    const double step = static_cast<double>(s.step);
    const double bias_correction1 = 1 - std::pow(beta1, step);
    const double bias_correction2 = 1 - std::pow(beta2, step);
    const double step_size = lr / bias_correction1;
    const double bias_correction2_sqrt = std::sqrt(bias_correction2);
    torch::Tensor denom = (s.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(options_.eps);
    param.addcdiv_(s.exp_avg, denom, -step_size);
  }
}

void Adam::zero_grad() {
  for (auto& [name, param] : params_) {
    if (param.grad().defined()) param.mutable_grad() = torch::Tensor();
  }
}

NamedTensors Adam::state_tensors() const {
  NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    const State& s = state_[i];
    if (s.step == 0) continue;
    const std::string& name = params_[i].first;
    out.emplace_back("exp_avg/" + name, s.exp_avg.detach().to(torch::kCPU).contiguous());
    out.emplace_back("exp_avg_sq/" + name, s.exp_avg_sq.detach().to(torch::kCPU).contiguous());
    out.emplace_back("step/" + name, torch::full({1}, s.step, torch::kInt64));
  }
  return out;
}

void Adam::load_state_tensors(const std::map<std::string, torch::Tensor>& tensors) {
  std::set<std::string> used;
  std::vector<std::string> problems;
  std::vector<State> loaded(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, param] = params_[i];
    const auto step = tensors.find("step/" + name);
    if (step == tensors.end()) continue;  // never stepped
    used.insert(step->first);
    if (step->second.scalar_type() != torch::kInt64 || step->second.numel() != 1) {
      problems.push_back(fmt::format("'step/{}' must be one int64", name));
      continue;
    }
    loaded[i].step = step->second.item<int64_t>();
    for (const char* kind : {"exp_avg/", "exp_avg_sq/"}) {
      const std::string key = kind + name;
      const auto found = tensors.find(key);
      if (found == tensors.end()) {
        problems.push_back(fmt::format("'{}' missing", key));
        continue;
      }
      used.insert(key);
      const torch::Tensor& t = found->second;
      if (t.sizes() != param.sizes() || t.scalar_type() != param.scalar_type()) {
        problems.push_back(fmt::format("'{}' is {} {} but the parameter is {} {}", key,
                                       c10::toString(t.scalar_type()), fmt::join(t.sizes(), "x"),
                                       c10::toString(param.scalar_type()), fmt::join(param.sizes(), "x")));
        continue;
      }
      torch::Tensor copy = torch::empty_like(param, torch::MemoryFormat::Preserve);
      copy.copy_(t);
      (std::string(kind) == "exp_avg/" ? loaded[i].exp_avg : loaded[i].exp_avg_sq) = copy;
    }
  }
  for (const auto& [key, tensor] : tensors) {
    if (used.count(key) == 0) problems.push_back(fmt::format("unexpected '{}'", key));
  }
  MGCA_CHECK(problems.empty(), "optimizer state does not match the model: {}", fmt::join(problems, "; "));
  state_ = std::move(loaded);
}

double clip_grad_norm(const NamedTensors& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const auto& [name, param] : params) {
    if (param.grad().defined()) norms.push_back(param.grad().detach().norm(2));
  }
  if (norms.empty()) return 0.0;
  const torch::Tensor total = torch::stack(norms).norm(2);
  if (max_norm > 0) {
    const torch::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    for (const auto& [name, param] : params) {
      if (param.grad().defined()) param.mutable_grad().detach().mul_(coef.to(param.grad().device()));
    }
  }
  return total.item<double>();
}

}  // namespace mgca::train
