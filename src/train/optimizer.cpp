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
#define MGCA_AVX2_FMA __attribute__((target("avx2,fma")))
// The op-by-op update below fused into one or two passes over memory (the
// update is memory-bound: nine passes over 4 arrays become one or two). Per
// element it does the same IEEE operations with the same roundings as ATen's
// CPU kernels do op by op: mul_(s) a product; add_(g, α) and addcmul_(g, g, α)
// a fused multiply-add (fma(g, α, m) and fma(α·g, g, v)); tensor / scalar a
// true division; addcdiv_(m, d, α) (α·m) / d then an add. The square root is
// the one exception: ATen's takes MKL's vsSqrt on vectors of 8 or more (within
// 1 ulp, not always correctly rounded), so where it differs from the IEEE root
// the update runs in two passes around ATen's own sqrt (AdamWKernel).
struct AdamWLanes {
  __m256 decay, beta1, a1, beta2, a2, bc2, eps, step;
};
MGCA_AVX2_FMA inline AdamWLanes adamw_lanes(const AdamWScalars& s) {
  return {_mm256_set1_ps(s.decay), _mm256_set1_ps(s.beta1), _mm256_set1_ps(s.one_minus_beta1),
          _mm256_set1_ps(s.beta2), _mm256_set1_ps(s.one_minus_beta2), _mm256_set1_ps(s.bias_correction2_sqrt),
          _mm256_set1_ps(s.eps), _mm256_set1_ps(s.neg_step_size)};
}
// Eight lanes of the first half: m and v stored, p·decay returned (rounded:
// ATen's mul_ and addcdiv_ are separate kernels, so the product must not be
// contracted into the final add as an FMA).
MGCA_AVX2_FMA inline __m256 adamw_moments8(const float* p, const float* g, float* m, float* v, const AdamWLanes& c,
                                           __m256& m_out, __m256& v_out) {
  const __m256 gi = _mm256_loadu_ps(g);
  __m256 p_decayed = _mm256_mul_ps(_mm256_loadu_ps(p), c.decay);
  __asm__("" : "+x"(p_decayed));
  m_out = _mm256_fmadd_ps(gi, c.a1, _mm256_mul_ps(_mm256_loadu_ps(m), c.beta1));
  v_out = _mm256_fmadd_ps(_mm256_mul_ps(c.a2, gi), gi, _mm256_mul_ps(_mm256_loadu_ps(v), c.beta2));
  _mm256_storeu_ps(m, m_out);
  _mm256_storeu_ps(v, v_out);
  return p_decayed;
}
// Eight lanes of the second half: p = p·decay + (−step·m) / (root / bc2 + ε).
MGCA_AVX2_FMA inline void adamw_apply8(float* p, __m256 p_decayed, __m256 mi, __m256 root, const AdamWLanes& c) {
  const __m256 d = _mm256_add_ps(_mm256_div_ps(root, c.bc2), c.eps);
  _mm256_storeu_ps(p, _mm256_add_ps(p_decayed, _mm256_div_ps(_mm256_mul_ps(c.step, mi), d)));
}
inline float adamw_moments1(const float* p, const float* g, float* m, float* v, const AdamWScalars& s) {
  const float gi = *g;
  float p_decayed = *p * s.decay;
  __asm__("" : "+x"(p_decayed));
  *m = std::fma(gi, s.one_minus_beta1, *m * s.beta1);
  *v = std::fma(s.one_minus_beta2 * gi, gi, *v * s.beta2);
  return p_decayed;
}
inline void adamw_apply1(float* p, float p_decayed, float mi, float root, const AdamWScalars& s) {
  const float d = root / s.bias_correction2_sqrt + s.eps;
  *p = p_decayed + (s.neg_step_size * mi) / d;
}

// One pass, with the IEEE square root.
MGCA_AVX2_FMA void adamw_fused_range(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s) {
  const AdamWLanes c = adamw_lanes(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 mi, vi;
    const __m256 p_decayed = adamw_moments8(p + i, g + i, m + i, v + i, c, mi, vi);
    adamw_apply8(p + i, p_decayed, mi, _mm256_sqrt_ps(vi), c);
  }
  for (; i < n; ++i) {
    const float p_decayed = adamw_moments1(p + i, g + i, m + i, v + i, s);
    adamw_apply1(p + i, p_decayed, m[i], std::sqrt(v[i]), s);
  }
}
// Two passes around a square root taken elsewhere: first p·decay (stored in
// p), m and v; then the step from the roots of v.
MGCA_AVX2_FMA void adamw_moments_range(float* p, const float* g, float* m, float* v, int64_t n,
                                       const AdamWScalars& s) {
  const AdamWLanes c = adamw_lanes(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 mi, vi;
    _mm256_storeu_ps(p + i, adamw_moments8(p + i, g + i, m + i, v + i, c, mi, vi));
  }
  for (; i < n; ++i) p[i] = adamw_moments1(p + i, g + i, m + i, v + i, s);
}
MGCA_AVX2_FMA void adamw_apply_range(float* p, const float* m, const float* root, int64_t n, const AdamWScalars& s) {
  const AdamWLanes c = adamw_lanes(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    adamw_apply8(p + i, _mm256_loadu_ps(p + i), _mm256_loadu_ps(m + i), _mm256_loadu_ps(root + i), c);
  }
  for (; i < n; ++i) adamw_apply1(p + i, p[i], m[i], root[i], s);
}
#undef MGCA_AVX2_FMA
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

constexpr int64_t kAdamWGrain = 32768;  // elements per at::parallel_for chunk

// The update in one pass (kernel Fused) or in two around ATen's sqrt of v,
// written into `root_scratch` (kernel SplitSqrt; grown as needed).
void adamw_fused(AdamWKernel kernel, torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg,
                 torch::Tensor& exp_avg_sq, torch::Tensor& root_scratch, const AdamWScalars& s) {
#if defined(__x86_64__)
  float* p = param.data_ptr<float>();
  const float* g = grad.data_ptr<float>();
  float* m = exp_avg.data_ptr<float>();
  float* v = exp_avg_sq.data_ptr<float>();
  const int64_t n = param.numel();
  if (kernel == AdamWKernel::Fused) {
    at::parallel_for(0, n, kAdamWGrain, [&](int64_t begin, int64_t end) {
      adamw_fused_range(p + begin, g + begin, m + begin, v + begin, end - begin, s);
    });
    return;
  }
  MGCA_CHECK(kernel == AdamWKernel::SplitSqrt, "adamw_fused: the op-by-op kernel has no fused form");
  at::parallel_for(0, n, kAdamWGrain, [&](int64_t begin, int64_t end) {
    adamw_moments_range(p + begin, g + begin, m + begin, v + begin, end - begin, s);
  });
  if (root_scratch.numel() < n) root_scratch = torch::empty({n}, exp_avg_sq.options());
  // The same ATen kernel, shape and chunking as exp_avg_sq.sqrt() op by op.
  torch::Tensor root = root_scratch.narrow(0, 0, n).view(exp_avg_sq.sizes());
  at::sqrt_out(root, exp_avg_sq);
  const float* r = root.data_ptr<float>();
  at::parallel_for(0, n, kAdamWGrain, [&](int64_t begin, int64_t end) {
    adamw_apply_range(p + begin, m + begin, r + begin, end - begin, s);
  });
#else
  (void)kernel, (void)param, (void)grad, (void)exp_avg, (void)exp_avg_sq, (void)root_scratch, (void)s;
  MGCA_FAIL("fused AdamW is only built for x86-64");
#endif
}

// Whether `kernel` gives the op-by-op bits here: checked once, on random
// values of sizes that run the scalar path of ATen's sqrt (n < 8), its vector
// path, our vector and tail code and several chunks, for several steps (bias
// corrections change) and weight decays, a step of tiny gradients included.
bool kernel_matches_op_by_op(AdamWKernel kernel) {
  torch::NoGradGuard no_grad;
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(12345);
  torch::Tensor scratch;
  for (const int64_t n : {int64_t{5}, int64_t{4099}, 3 * kAdamWGrain + 13}) {
    torch::Tensor p1 = torch::randn({n}, gen), m1 = torch::zeros({n}), v1 = torch::zeros({n});
    torch::Tensor p2 = p1.clone(), m2 = m1.clone(), v2 = v1.clone();
    for (int64_t step = 1; step <= 4; ++step) {
      const torch::Tensor g = torch::randn({n}, gen) * (step == 3 ? 1e-4 : 1.0);
      const double lr = 1e-3 * static_cast<double>(step), wd = step % 2 ? 0.05 : 0.0;
      adamw_op_by_op(p1, g, m1, v1, lr, wd, 0.9, 0.999, 1e-8, step);
      adamw_fused(kernel, p2, g, m2, v2, scratch, adamw_scalars(lr, wd, 0.9, 0.999, 1e-8, step));
      if (!torch::equal(p1, p2) || !torch::equal(m1, m2) || !torch::equal(v1, v2)) return false;
    }
  }
  return true;
}

AdamWKernel choose_adamw_kernel() {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return AdamWKernel::OpByOp;
  for (const AdamWKernel kernel : {AdamWKernel::Fused, AdamWKernel::SplitSqrt}) {
    if (kernel_matches_op_by_op(kernel)) return kernel;
  }
#endif
  return AdamWKernel::OpByOp;
}

}  // namespace

AdamWKernel adamw_kernel() {
  static const AdamWKernel kernel = choose_adamw_kernel();
  return kernel;
}

void adamw_update(AdamWKernel kernel, torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg,
                  torch::Tensor& exp_avg_sq, torch::Tensor& root_scratch, double lr, double wd, double beta1,
                  double beta2, double eps, int64_t step) {
  if (kernel != AdamWKernel::OpByOp && fusable(param) && fusable(grad) && fusable(exp_avg) && fusable(exp_avg_sq)) {
    adamw_fused(kernel, param, grad, exp_avg, exp_avg_sq, root_scratch,
                adamw_scalars(lr, wd, beta1, beta2, eps, step));
  } else {
    adamw_op_by_op(param, grad, exp_avg, exp_avg_sq, lr, wd, beta1, beta2, eps, step);
  }
}

const char* adamw_kernel_name(AdamWKernel kernel) {
  switch (kernel) {
    case AdamWKernel::Fused: return "fused (one pass)";
    case AdamWKernel::SplitSqrt: return "fused around ATen's sqrt (two passes)";
    case AdamWKernel::OpByOp: break;
  }
  return "op by op";
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
      adamw_update(adamw_kernel(), param, grad, s.exp_avg, s.exp_avg_sq, root_scratch_, lr, wd, beta1, beta2,
                   options_.eps, s.step);
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

std::vector<std::string> Adam::load_state_tensors(const std::map<std::string, torch::Tensor>& tensors,
                                                  const std::set<std::string>& untrained) {
  std::set<std::string> used;
  std::set<std::string> dropped;
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
    if (used.count(key) != 0) continue;
    const size_t slash = key.find('/');
    const std::string name = slash == std::string::npos ? key : key.substr(slash + 1);
    if (untrained.count(name) != 0) {
      dropped.insert(name);
    } else {
      problems.push_back(fmt::format("unexpected '{}'", key));
    }
  }
  MGCA_CHECK(problems.empty(), "optimizer state does not match the model: {}", fmt::join(problems, "; "));
  state_ = std::move(loaded);
  return {dropped.begin(), dropped.end()};
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
