#include <fmt/ranges.h>
#include "mgca/train/optimizer.h"

#include <torch/torch.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cmath>
#include <set>

#include "mgca/util/error.h"

namespace mgca::train {
namespace {

// The scalars of one AdamW update, rounded to float as ATen's CPU kernels
// round a Scalar for a float32 tensor.
struct AdamWScalars {
  float decay;   // 1 - lr·wd
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float bias_correction2_sqrt, eps;
  float neg_step_size;  // -lr / (1 - β1^t)
};

#if defined(__x86_64__)
// The op-by-op update below fused into one pass over memory (the update is
// memory-bound: nine passes over 4 arrays become one). Per element it does
// the same IEEE operations with the same roundings as ATen's CPU kernels do
// op by op: mul_(s) a product; add_(g, α) and addcmul_(g, g, α) a fused
// multiply-add (fma(g, α, m) and fma(α·g, g, v)); tensor / scalar a true
// division; addcdiv_(m, d, α) (α·m) / d then an add. It is used only when
// fused_adamw_exact() has found it bit-identical to the op-by-op update on
// this build and CPU.
__attribute__((target("avx2,fma"))) void fused_adamw_range(float* p, const float* g, float* m, float* v,
                                                            int64_t n, const AdamWScalars& s) {
  const __m256 decay = _mm256_set1_ps(s.decay), beta1 = _mm256_set1_ps(s.beta1),
               a1 = _mm256_set1_ps(s.one_minus_beta1), beta2 = _mm256_set1_ps(s.beta2),
               a2 = _mm256_set1_ps(s.one_minus_beta2), bc2 = _mm256_set1_ps(s.bias_correction2_sqrt),
               eps = _mm256_set1_ps(s.eps), step = _mm256_set1_ps(s.neg_step_size);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    __m256 pi = _mm256_mul_ps(_mm256_loadu_ps(p + i), decay);
    // Round p·decay here: ATen's mul_ and addcdiv_ are separate kernels, and the
    // compiler must not contract the product into the final add (an FMA).
    __asm__("" : "+x"(pi));
    const __m256 mi = _mm256_fmadd_ps(gi, a1, _mm256_mul_ps(_mm256_loadu_ps(m + i), beta1));
    const __m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(a2, gi), gi, _mm256_mul_ps(_mm256_loadu_ps(v + i), beta2));
    const __m256 d = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    _mm256_storeu_ps(p + i, _mm256_add_ps(pi, _mm256_div_ps(_mm256_mul_ps(step, mi), d)));
  }
  for (; i < n; ++i) {
    const float gi = g[i];
    float pi = p[i] * s.decay;
    __asm__("" : "+x"(pi));
    const float mi = std::fma(gi, s.one_minus_beta1, m[i] * s.beta1);
    const float vi = std::fma(s.one_minus_beta2 * gi, gi, v[i] * s.beta2);
    const float d = std::sqrt(vi) / s.bias_correction2_sqrt + s.eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + (s.neg_step_size * mi) / d;
  }
}
#endif

AdamWScalars adamw_scalars(double lr, double wd, double beta1, double beta2, double eps, int64_t step) {
  const double t = static_cast<double>(step);
  AdamWScalars s;
  s.decay = static_cast<float>(1 - lr * wd);
  s.beta1 = static_cast<float>(beta1);
  s.one_minus_beta1 = static_cast<float>(1 - beta1);
  s.beta2 = static_cast<float>(beta2);
  s.one_minus_beta2 = static_cast<float>(1 - beta2);
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(1 - std::pow(beta2, t)));
  s.eps = static_cast<float>(eps);
  s.neg_step_size = static_cast<float>(-(lr / (1 - std::pow(beta1, t))));
  return s;
}

// The op-by-op AdamW update of one parameter (PyTorch's single-tensor path).
void adamw_op_by_op(torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg,
                    torch::Tensor& exp_avg_sq, double lr, double wd, double beta1, double beta2, double eps,
                    int64_t step) {
  param.mul_(1 - lr * wd);
  exp_avg.mul_(beta1).add_(grad, 1 - beta1);
  exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
  const double t = static_cast<double>(step);
  const double step_size = lr / (1 - std::pow(beta1, t));
  const double bias_correction2_sqrt = std::sqrt(1 - std::pow(beta2, t));
  torch::Tensor denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps);
  param.addcdiv_(exp_avg, denom, -step_size);
}

bool fusable(const torch::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous() && !t.is_sparse();
}

void adamw_fused(torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq,
                 const AdamWScalars& s) {
#if defined(__x86_64__)
  float* p = param.data_ptr<float>();
  const float* g = grad.data_ptr<float>();
  float* m = exp_avg.data_ptr<float>();
  float* v = exp_avg_sq.data_ptr<float>();
  at::parallel_for(0, param.numel(), 32768, [&](int64_t begin, int64_t end) {
    fused_adamw_range(p + begin, g + begin, m + begin, v + begin, end - begin, s);
  });
#else
  (void)param, (void)grad, (void)exp_avg, (void)exp_avg_sq, (void)s;
  MGCA_FAIL("fused AdamW is only built for x86-64");
#endif
}

// Whether the fused update gives the op-by-op bits here: checked once, on
// random values of a size that runs both the vector and the tail code, for
// several steps (bias corrections change) and weight decays.
bool check_fused_adamw() {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
  torch::NoGradGuard no_grad;
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(12345);
  const int64_t n = 4099;
  torch::Tensor p1 = torch::randn({n}, gen), m1 = torch::zeros({n}), v1 = torch::zeros({n});
  torch::Tensor p2 = p1.clone(), m2 = m1.clone(), v2 = v1.clone();
  for (int64_t step = 1; step <= 4; ++step) {
    const torch::Tensor g = torch::randn({n}, gen) * (step == 3 ? 1e-4 : 1.0);
    const double lr = 1e-3 * static_cast<double>(step), wd = step % 2 ? 0.05 : 0.0;
    adamw_op_by_op(p1, g, m1, v1, lr, wd, 0.9, 0.999, 1e-8, step);
    adamw_fused(p2, g, m2, v2, adamw_scalars(lr, wd, 0.9, 0.999, 1e-8, step));
    if (!torch::equal(p1, p2) || !torch::equal(m1, m2) || !torch::equal(v1, v2)) return false;
  }
  return true;
#else
  return false;
#endif
}

}  // namespace

bool fused_adamw_available() {
  static const bool ok = check_fused_adamw();
  return ok;
}

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
      if (fusable(param) && fusable(grad) && fusable(s.exp_avg) && fusable(s.exp_avg_sq) &&
          fused_adamw_available()) {
        adamw_fused(param, grad, s.exp_avg, s.exp_avg_sq, adamw_scalars(lr, wd, beta1, beta2, options_.eps, s.step));
      } else {
        adamw_op_by_op(param, grad, s.exp_avg, s.exp_avg_sq, lr, wd, beta1, beta2, options_.eps, s.step);
      }
      continue;
    }
    if (wd != 0) grad = grad.add(param, wd);
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
    out.emplace_back("exp_avg/" + name, s.exp_avg.detach());
    out.emplace_back("exp_avg_sq/" + name, s.exp_avg_sq.detach());
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
