#include "mgca/comm/exact_grad.h"

#include <torch/torch.h>

#include <optional>
#include <unordered_map>

#include "mgca/util/error.h"

namespace mgca::comm {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

thread_local const GradShadows* active_shadows = nullptr;

struct ExactFnHolder : torch::CustomClassHolder {
  explicit ExactFnHolder(ExactFn f) : fn(std::move(f)) {}
  ExactFn fn;
};

// `all` = inputs, params, then the shadows of the params that have one
// (shadow_slot[j]: index into those, or -1).
class ExactOpFunction : public torch::autograd::Function<ExactOpFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, at::TensorList all, int64_t n_inputs, int64_t n_params,
                               std::vector<int64_t> shadow_slot, c10::IValue holder) {
    const auto& fn = static_cast<ExactFnHolder*>(holder.toCapsule().get())->fn;
    // Forward in float64 too, rounded once: the float32 kernels are
    // row-independent only as far as their blocking does not depend on the
    // batch size (measured: ResNet's convolutions at b = 8 differ from b = 32).
    std::vector<torch::Tensor> inputs, params;
    std::optional<torch::ScalarType> dtype;
    for (int64_t i = 0; i < n_inputs + n_params; ++i) {
      auto t = all[i];
      if (t.is_floating_point()) {
        if (!dtype) dtype = t.scalar_type();
        t = t.to(torch::kFloat64);
      }
      (i < n_inputs ? inputs : params).push_back(t);
    }
    auto y = fn(inputs, params);
    if (dtype) y = y.to(*dtype);
    std::vector<torch::Tensor> saved(all.begin(), all.begin() + n_inputs + n_params);
    std::vector<int64_t> wants(static_cast<size_t>(n_inputs + n_params));
    for (int64_t i = 0; i < n_inputs + n_params; ++i) wants[i] = all[i].requires_grad() ? 1 : 0;
    ctx->save_for_backward(saved);
    ctx->saved_data["fn"] = holder;
    ctx->saved_data["n_inputs"] = n_inputs;
    ctx->saved_data["n_all"] = static_cast<int64_t>(all.size());
    ctx->saved_data["wants"] = wants;
    ctx->saved_data["shadow_slot"] = shadow_slot;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const int64_t n_inputs = ctx->saved_data["n_inputs"].toInt();
    const int64_t n_all = ctx->saved_data["n_all"].toInt();
    const auto wants = ctx->saved_data["wants"].toIntVector();
    const auto shadow_slot = ctx->saved_data["shadow_slot"].toIntVector();
    const auto& fn = static_cast<ExactFnHolder*>(ctx->saved_data["fn"].toCapsule().get())->fn;
    auto saved = ctx->get_saved_variables();
    const int64_t n_params = static_cast<int64_t>(saved.size()) - n_inputs;
    const int64_t first_shadow = n_inputs + n_params;
    variable_list result(static_cast<size_t>(n_all + 4));
    if (!grad_outputs[0].defined()) return result;

    // fn again in float64, differentiated there: products of float32 values
    // are exact in float64 and their sums round at ~1e-16, so the parameters'
    // gradient sums do not depend on how the rows are split (after one
    // rounding to float32 at the end).
    torch::AutoGradMode enable_grad(true);
    std::vector<torch::Tensor> xs, ps, wrt;
    std::vector<int64_t> where;  // for each entry of wrt: its slot in result
    for (int64_t i = 0; i < n_inputs + n_params; ++i) {
      auto t = saved[i];
      if (t.is_floating_point()) {
        t = t.detach().to(torch::kFloat64);
        const bool shadowed = i >= n_inputs && shadow_slot[i - n_inputs] >= 0;
        if (shadowed || wants[i]) {
          t.requires_grad_(true);
          wrt.push_back(t);
          where.push_back(shadowed ? first_shadow + shadow_slot[i - n_inputs] : i);
        }
      }
      (i < n_inputs ? xs : ps).push_back(t);
    }
    if (wrt.empty()) return result;
    const auto y = fn(xs, ps);
    const auto grads = torch::autograd::grad({y}, wrt, {grad_outputs[0].to(torch::kFloat64)},
                                             /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t k = 0; k < wrt.size(); ++k) {
      const int64_t slot = where[k];
      if (slot >= first_shadow) {
        // A shadow always gets a tensor: hooks on it (GradSync) expect one.
        result[slot] = grads[k].defined() ? grads[k] : torch::zeros_like(wrt[k]);
      } else if (grads[k].defined()) {
        result[slot] = grads[k].to(saved[slot].scalar_type());
      }
    }
    return result;
  }
};

// Forward: the parameter (a copy); backward: the gradient into the shadow on
// rank 0 only.
class ReplicatedParameter : public torch::autograd::Function<ReplicatedParameter> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& parameter, const torch::Tensor& /*shadow*/,
                               bool counts) {
    ctx->saved_data["counts"] = counts;
    return parameter.clone();
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    if (!grad_outputs[0].defined()) return {torch::Tensor(), torch::Tensor(), torch::Tensor()};
    auto grad = grad_outputs[0].to(torch::kFloat64);
    // The other ranks contribute exact zeros (a tensor: hooks on the shadow expect one).
    if (!ctx->saved_data["counts"].toBool()) grad = torch::zeros_like(grad);
    return {torch::Tensor(), grad, torch::Tensor()};
  }
};

}  // namespace

GradShadows::GradShadows(const NamedTensors& parameters) {
  std::unordered_map<const void*, bool> seen;
  for (const auto& [name, p] : parameters) {
    if (!p.defined() || !p.requires_grad() || !p.is_floating_point()) continue;
    if (!seen.emplace(p.unsafeGetTensorImpl(), true).second) continue;
    parameters_.push_back(p);
    shadows_.emplace_back(name, torch::zeros(p.sizes(), p.options().dtype(torch::kFloat64)).requires_grad_(true));
  }
}

torch::Tensor GradShadows::shadow_of(const torch::Tensor& parameter) const {
  // A linear scan: a few hundred parameters, a few dozen wrapped ops per forward.
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (parameters_[i].unsafeGetTensorImpl() == parameter.unsafeGetTensorImpl()) return shadows_[i].second;
  }
  return {};
}

void GradShadows::write_gradients() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    auto& p = parameters_[i];
    // A gradient that reached .grad by autograd skipped the shadow (a use of
    // the parameter outside exact_op): it would be neither exact nor synced.
    MGCA_CHECK(!p.grad().defined(),
               "runtime.batch_invariant: parameter '{}' got a gradient outside the exact path", shadows_[i].first);
    const auto& g = shadows_[i].second.grad();
    if (g.defined()) p.mutable_grad() = g.to(p.scalar_type());
  }
}

void GradShadows::zero_grad() {
  for (auto& [name, shadow] : shadows_) shadow.mutable_grad() = torch::Tensor();
}

GradShadows::Scope::Scope(const GradShadows* shadows) : previous_(active_shadows) { active_shadows = shadows; }
GradShadows::Scope::~Scope() { active_shadows = previous_; }

bool exact_gradients_active() { return active_shadows != nullptr && torch::GradMode::is_enabled(); }

torch::Tensor exact_op(const ExactFn& fn, const std::vector<torch::Tensor>& inputs,
                       const std::vector<torch::Tensor>& params) {
  if (!exact_gradients_active()) return fn(inputs, params);
  std::vector<torch::Tensor> all(inputs);
  all.insert(all.end(), params.begin(), params.end());
  std::vector<int64_t> shadow_slot;
  std::vector<torch::Tensor> shadows;
  bool needs_grad = false;
  for (const auto& t : inputs) needs_grad = needs_grad || (t.defined() && t.requires_grad());
  for (const auto& p : params) {
    MGCA_CHECK(p.defined(), "exact_op: an undefined parameter");
    auto s = active_shadows->shadow_of(p);
    shadow_slot.push_back(s.defined() ? static_cast<int64_t>(shadows.size()) : -1);
    if (s.defined()) shadows.push_back(s);
    needs_grad = needs_grad || s.defined() || p.requires_grad();
  }
  if (!needs_grad) return fn(inputs, params);
  all.insert(all.end(), shadows.begin(), shadows.end());
  return ExactOpFunction::apply(at::TensorList(all), static_cast<int64_t>(inputs.size()),
                                static_cast<int64_t>(params.size()), shadow_slot,
                                c10::IValue::make_capsule(c10::make_intrusive<ExactFnHolder>(fn)));
}

torch::Tensor replicated_parameter(const torch::Tensor& parameter, const Communicator& comm) {
  const bool counts = comm.rank() == 0;
  if (exact_gradients_active()) {
    auto s = active_shadows->shadow_of(parameter);
    if (s.defined()) return ReplicatedParameter::apply(parameter, s, counts);
  }
  return counts ? parameter : parameter.detach();
}

}  // namespace mgca::comm
