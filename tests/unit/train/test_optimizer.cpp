// Adam/AdamW against libtorch's own torch::optim implementations (bit for
// bit), the state round trip, clipping, and the learning-rate schedule.
#include <gtest/gtest.h>

#include <cstdio>
#include <torch/torch.h>

#include <cmath>

#include "mgca/train/config.h"
#include "mgca/train/optimizer.h"
#include "mgca/train/schedule.h"
#include "mgca/util/error.h"
#include "support/tensor_checks.h"

namespace mgca::train {
namespace {

NamedTensors make_params(int64_t seed) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(seed);
  NamedTensors params;
  params.emplace_back("encoder.weight", torch::randn({5, 4}, gen).requires_grad_(true));
  params.emplace_back("encoder.bias", torch::randn({5}, gen).requires_grad_(true));
  params.emplace_back("prototypes.weight", torch::randn({3, 4}, gen).requires_grad_(true));
  return params;
}

// Deterministic gradients for step k; the prototypes get none in the first two steps.
void set_grads(const NamedTensors& params, int k) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(1000 + k);
  for (const auto& [name, p] : params) {
    const torch::Tensor g = torch::randn(p.sizes(), gen);
    if (name == "prototypes.weight" && k < 2) {
      p.mutable_grad() = torch::Tensor();
    } else {
      p.mutable_grad() = g;
    }
  }
}

NamedTensors clone(const NamedTensors& params) {
  NamedTensors out;
  for (const auto& [name, p] : params) out.emplace_back(name, p.detach().clone().requires_grad_(true));
  return out;
}

// The optimizer's state as load_state_tensors takes it (copies: the live
// state moves with the next step).
std::map<std::string, torch::Tensor> state_copy(const Adam& adam) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& [name, t] : adam.state_tensors()) state[name] = t.clone();
  return state;
}

std::vector<torch::Tensor> tensors_of(const NamedTensors& params) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, p] : params) out.push_back(p);
  return out;
}

void expect_identical(const NamedTensors& a, const NamedTensors& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first << " differs";
  }
}

TEST(Adam, AdamWMatchesTorchOptimBitForBit) {
  NamedTensors ours = make_params(1);
  NamedTensors theirs = clone(ours);
  Adam adam(ours, AdamOptions{true, 0.9, 0.999, 1e-8, 0.05, {}});
  torch::optim::AdamW reference(tensors_of(theirs),
                                torch::optim::AdamWOptions(1e-3).betas({0.9, 0.999}).eps(1e-8).weight_decay(0.05));
  for (int k = 0; k < 6; ++k) {
    const double lr = 1e-3 * (k + 1);
    set_grads(ours, k);
    set_grads(theirs, k);
    for (auto& group : reference.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    adam.step(lr);
    reference.step();
    expect_identical(ours, theirs);
  }
  EXPECT_EQ(adam.steps_of(0), 6);
  EXPECT_EQ(adam.steps_of(2), 4);  // skipped while it had no gradient
}

// Parameters large enough for the fused AdamW path's vector loop, its tail
// and several threads' chunks; one non-contiguous parameter takes the op-by-op path.
TEST(Adam, FusedAdamWMatchesTorchOptimBitForBit) {
  // The kernel is the first whose self-check found the op-by-op bits
  // (libtorch 2.11 on AVX-512 takes MKL's sqrt, 1 ulp off the IEEE root for
  // about one element in 5, so there it is SplitSqrt); whichever, the step
  // must equal torch's.
  std::printf("AdamW kernel: %s\n", adamw_kernel_name(adamw_kernel()));
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(7);
  NamedTensors ours;
  ours.emplace_back("big.weight", torch::randn({300, 301}, gen).requires_grad_(true));
  ours.emplace_back("odd.bias", torch::randn({13}, gen).requires_grad_(true));
  ours.emplace_back("strided.weight", torch::randn({40, 30}, gen).t().requires_grad_(true));
  NamedTensors theirs;
  for (const auto& [name, p] : ours) {
    torch::Tensor copy = torch::empty_strided(p.sizes(), p.strides());
    copy.copy_(p.detach());
    theirs.emplace_back(name, copy.requires_grad_(true));
  }
  Adam adam(ours, AdamOptions{true, 0.9, 0.999, 1e-8, 0.05, {"bias"}});
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{theirs[0].second, theirs[2].second},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(1e-3).betas({0.9, 0.999}).eps(1e-8).weight_decay(0.05)));
  groups.emplace_back(std::vector<torch::Tensor>{theirs[1].second},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(1e-3).betas({0.9, 0.999}).eps(1e-8).weight_decay(0.0)));
  torch::optim::AdamW reference(std::move(groups));
  for (int k = 0; k < 5; ++k) {
    const double lr = 1e-3 * (k + 1);
    for (size_t i = 0; i < ours.size(); ++i) {
      const torch::Tensor g = torch::randn(ours[i].second.sizes(), gen) * (k == 2 ? 1e-5 : 1.0);
      ours[i].second.mutable_grad() = g.clone();
      theirs[i].second.mutable_grad() = g.clone();
    }
    for (auto& group : reference.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    adam.step(lr);
    reference.step();
    expect_identical(ours, theirs);
  }
  at::set_num_threads(threads);
}

// Where AVX2 and FMA exist one of the fused kernels must match PyTorch: the
// op-by-op fallback costs the real-shape step ~0.4 s (docs/performance.md).
TEST(Adam, AFusedAdamWKernelMatchesPyTorchOnX86) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) GTEST_SKIP() << "no AVX2/FMA";
  EXPECT_NE(adamw_kernel(), AdamWKernel::OpByOp);
#else
  GTEST_SKIP() << "the fused AdamW kernels are x86-64 only";
#endif
}

// SplitSqrt takes ATen's own square root, so it must give the op-by-op bits
// on any CPU and ATen build. Fused takes the IEEE root, which differs from
// ATen's (MKL's) by at most an ulp of sqrt(v): each of its steps, from the
// op-by-op state, moves p within a relative 1e-6 of the op-by-op step, plus
// the final add's rounding. Sizes: ATen's scalar sqrt (n < 8), vector and
// tail code, several threads' chunks.
TEST(Adam, EachAdamWKernelMatchesTheOpByOpUpdate) {
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(11);
  for (const int64_t n : {int64_t{6}, int64_t{1003}, int64_t{200001}}) {
    torch::Tensor p = torch::randn({n}, gen), m = torch::zeros({n}), v = torch::zeros({n});
    torch::Tensor split_p = p.clone(), split_m = m.clone(), split_v = v.clone(), scratch;
    for (int64_t step = 1; step <= 4; ++step) {
      const torch::Tensor g = torch::randn({n}, gen) * (step == 3 ? 1e-5 : 1.0);
      const double lr = 1e-3 * step;
      torch::Tensor fused_p = p.clone(), fused_m = m.clone(), fused_v = v.clone();
      const torch::Tensor before = p.clone();
      adamw_update(AdamWKernel::OpByOp, p, g, m, v, scratch, lr, 0.05, 0.9, 0.999, 1e-8, step);
      adamw_update(AdamWKernel::SplitSqrt, split_p, g, split_m, split_v, scratch, lr, 0.05, 0.9, 0.999, 1e-8, step);
      adamw_update(AdamWKernel::Fused, fused_p, g, fused_m, fused_v, scratch, lr, 0.05, 0.9, 0.999, 1e-8, step);
      EXPECT_TRUE(torch::equal(split_p, p) && torch::equal(split_m, m) && torch::equal(split_v, v))
          << "SplitSqrt, n " << n << " step " << step;
      EXPECT_TRUE(torch::equal(fused_m, m) && torch::equal(fused_v, v)) << "Fused m, v: no root involved";
      const torch::Tensor allowed = 1e-6 * (p - before).abs() + p.abs() * std::ldexp(1.0, -23);
      EXPECT_TRUE(((fused_p - p).abs() <= allowed).all().item<bool>())
          << "Fused p, n " << n << " step " << step << ": worst "
          << ((fused_p - p).abs() / (p - before).abs().clamp_min(1e-30)).max().item<double>();
    }
  }
  at::set_num_threads(threads);
}

TEST(Adam, AdamWithL2DecayMatchesTorchOptimBitForBit) {
  NamedTensors ours = make_params(2);
  NamedTensors theirs = clone(ours);
  Adam adam(ours, AdamOptions{false, 0.9, 0.999, 1e-8, 1e-6, {}});
  torch::optim::Adam reference(tensors_of(theirs),
                               torch::optim::AdamOptions(1e-4).betas({0.9, 0.999}).eps(1e-8).weight_decay(1e-6));
  for (int k = 0; k < 5; ++k) {
    set_grads(ours, k);
    set_grads(theirs, k);
    adam.step(1e-4);
    reference.step();
    expect_identical(ours, theirs);
  }
}

TEST(Adam, NoDecayPatternsFormAGroupWithoutWeightDecay) {
  NamedTensors decayed = make_params(3);
  NamedTensors plain = clone(decayed);
  Adam adam(decayed, AdamOptions{true, 0.9, 0.999, 1e-8, 0.1, {"bias"}});
  EXPECT_EQ(adam.weight_decay_of(0), 0.1);
  EXPECT_EQ(adam.weight_decay_of(1), 0.0);
  EXPECT_EQ(adam.weight_decay_of(2), 0.1);
  // The bias must move exactly as with weight decay 0.
  Adam no_decay(plain, AdamOptions{true, 0.9, 0.999, 1e-8, 0.0, {}});
  for (int k = 2; k < 5; ++k) {
    set_grads(decayed, k);
    set_grads(plain, k);
    adam.step(1e-2);
    no_decay.step(1e-2);
  }
  EXPECT_TRUE(torch::equal(decayed[1].second, plain[1].second));
  EXPECT_FALSE(torch::equal(decayed[0].second, plain[0].second));
}

TEST(Adam, StateRoundTripContinuesBitForBit) {
  NamedTensors a = make_params(4);
  Adam first(a, AdamOptions{true, 0.9, 0.999, 1e-8, 0.05, {}});
  for (int k = 0; k < 3; ++k) {
    set_grads(a, k);
    first.step(1e-3);
  }
  // A second optimizer over copies of the weights, restored from the state.
  NamedTensors b = clone(a);
  Adam second(b, AdamOptions{true, 0.9, 0.999, 1e-8, 0.05, {}});
  std::map<std::string, torch::Tensor> state = state_copy(first);
  EXPECT_EQ(state.size(), 9u);  // 3 kinds × 3 parameters (the prototypes stepped once)
  second.load_state_tensors(state);
  for (int k = 3; k < 7; ++k) {
    set_grads(a, k);
    set_grads(b, k);
    first.step(1e-3);
    second.step(1e-3);
    expect_identical(a, b);
  }
}

// A checkpoint written while a tensor was still trained (a head bias since
// folded into BatchNorm, a parameter frozen since): its state is dropped and
// named when the caller says the model holds it untrained; unknown names stay
// errors, and the trained parameters' state loads bit for bit.
TEST(Adam, StateOfUntrainedTensorsIsDroppedAndNamed) {
  NamedTensors a = make_params(4);
  Adam first(a, AdamOptions{});
  set_grads(a, 1);
  first.step(1e-3);
  std::map<std::string, torch::Tensor> state = state_copy(first);
  for (const char* kind : {"exp_avg/", "exp_avg_sq/"}) state[std::string(kind) + "head.fc1.bias"] = torch::ones({3});
  state["step/head.fc1.bias"] = torch::full({1}, 1, torch::kInt64);
  NamedTensors b = clone(a);
  Adam second(b, AdamOptions{});
  EXPECT_THROW(second.load_state_tensors(state), mgca::Error);  // not declared untrained: unexpected
  const auto dropped = second.load_state_tensors(state, {"head.fc1.bias", "image.norm.bias"});
  EXPECT_EQ(dropped, std::vector<std::string>{"head.fc1.bias"});
  set_grads(a, 2);
  set_grads(b, 2);
  first.step(1e-3);
  second.step(1e-3);
  expect_identical(a, b);
}

TEST(Adam, StateThatDoesNotMatchIsAnError) {
  NamedTensors a = make_params(5);
  Adam adam(a, AdamOptions{});
  set_grads(a, 3);
  adam.step(1e-3);
  const std::map<std::string, torch::Tensor> state = state_copy(adam);
  auto bad = state;
  bad["exp_avg/encoder.bias"] = torch::zeros({6});
  bad["exp_avg/ghost"] = torch::zeros({1});
  bad.erase("exp_avg_sq/encoder.weight");
  try {
    adam.load_state_tensors(bad);
    FAIL() << "expected an error";
  } catch (const mgca::Error& e) {
    const std::string m = e.message();
    EXPECT_NE(m.find("'exp_avg/encoder.bias' is Float 6 but the parameter is Float 5"), std::string::npos) << m;
    EXPECT_NE(m.find("'exp_avg_sq/encoder.weight' missing"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected 'exp_avg/ghost'"), std::string::npos) << m;
  }
}

TEST(ClipGradNorm, MatchesTheDefinitionAndClips) {
  NamedTensors params = make_params(6);
  set_grads(params, 4);
  double expected = 0;
  for (const auto& [name, p] : params) expected += p.grad().to(torch::kFloat64).pow(2).sum().item<double>();
  expected = std::sqrt(expected);
  std::vector<torch::Tensor> before;
  for (const auto& [name, p] : params) before.push_back(p.grad().clone());
  EXPECT_NEAR(clip_grad_norm(params, 0.0), expected, 1e-5 * expected);
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i].second.grad(), before[i]));
  EXPECT_NEAR(clip_grad_norm(params, 1e9), expected, 1e-5 * expected);  // coefficient 1: unchanged
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i].second.grad(), before[i]));
  const double norm = clip_grad_norm(params, 0.5);
  EXPECT_NEAR(norm, expected, 1e-5 * expected);
  double after = 0;
  for (const auto& [name, p] : params) after += p.grad().to(torch::kFloat64).pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(after), 0.5, 1e-5);
  // And as torch.nn.utils.clip_grad_norm_ (libtorch's port) does it, bit for bit.
  NamedTensors reference = clone(params);
  for (size_t i = 0; i < params.size(); ++i) reference[i].second.mutable_grad() = before[i].clone();
  set_grads(params, 4);
  clip_grad_norm(params, 0.5);
  torch::nn::utils::clip_grad_norm_(tensors_of(reference), 0.5);
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(torch::equal(params[i].second.grad(), reference[i].second.grad())) << params[i].first;
  }
}

TEST(Schedule, CosineWithLinearWarmupFromMinLr) {
  ScheduleOptions config;  // cosine, warm-up 0.4, min_lr 1e-8
  const double lr = 2e-5, min_lr = 1e-8;
  const LrSchedule s = LrSchedule::from_config(config, lr, 10);
  EXPECT_EQ(s.warmup_steps, 4);
  EXPECT_DOUBLE_EQ(s.at(0), min_lr);
  EXPECT_DOUBLE_EQ(s.at(2), min_lr + (lr - min_lr) * 0.5);
  EXPECT_DOUBLE_EQ(s.at(4), lr);
  EXPECT_DOUBLE_EQ(s.at(7), min_lr + (lr - min_lr) * 0.5);  // halfway through the cosine
  EXPECT_NEAR(s.at(9), min_lr + (lr - min_lr) * (1 + std::cos(M_PI * 5 / 6)) / 2, 1e-20);
  for (int64_t k = 1; k < 4; ++k) EXPECT_GT(s.at(k), s.at(k - 1));
  for (int64_t k = 5; k < 10; ++k) EXPECT_LT(s.at(k), s.at(k - 1));
  // int(T * 0.4) as the official code: 7 steps → 2 warm-up steps.
  EXPECT_EQ(LrSchedule::from_config(config, lr, 7).warmup_steps, 2);
}

TEST(Schedule, ConstantAndNoWarmup) {
  ScheduleOptions config;
  config.name = ScheduleKind::Constant;
  const LrSchedule constant = LrSchedule::from_config(config, 1e-4, 100);
  for (int64_t k : {0, 10, 99}) EXPECT_EQ(constant.at(k), 1e-4);
  config.name = ScheduleKind::Cosine;
  config.warmup_fraction = 0;
  const LrSchedule cosine = LrSchedule::from_config(config, 1e-3, 4);
  EXPECT_DOUBLE_EQ(cosine.at(0), 1e-3);
  EXPECT_DOUBLE_EQ(cosine.at(2), config.min_lr + (1e-3 - config.min_lr) * 0.5);
  EXPECT_THROW(LrSchedule::from_config(config, 1e-3, 0), mgca::Error);
}

}  // namespace
}  // namespace mgca::train
