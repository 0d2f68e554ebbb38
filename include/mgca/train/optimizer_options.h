// The [optimizer] table of a job (no torch: the optimizer itself is
// train/optimizer.h). visit_optimizer_options() binds each job-file key to
// its field with its meaning and allowed range.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mgca/util/option_types.h"

namespace mgca::train {

// AdamW: decoupled weight decay; Adam: L2 decay added to the gradient.
enum class OptimizerKind { AdamW, Adam };
inline constexpr util::NamedValue<OptimizerKind> kOptimizerKindNames[] = {{OptimizerKind::AdamW, "adamw"},
                                                                           {OptimizerKind::Adam, "adam"}};
constexpr const auto& enum_names(OptimizerKind) { return kOptimizerKindNames; }

struct OptimizerOptions {
  OptimizerKind name = OptimizerKind::AdamW;
  double lr = 2e-5;            // peak learning rate
  double weight_decay = 0.05;
  std::vector<double> betas = {0.9, 0.999};
  double eps = 1e-8;
  // Parameters whose name contains one of these strings get no weight decay.
  // Empty by default: the official MGCA code decays every parameter.
  std::vector<std::string> no_decay;
  double grad_clip_norm = 0.0;  // clip the global gradient L2 norm to this; 0 = off
  int64_t accumulate = 1;       // micro-steps per optimizer step
  // Loss spikes (llm.c's outlier detector): skip the update of a step whose
  // loss lies more than spike_zscore standard deviations above the mean of
  // the last spike_window losses; 0 = off.
  double spike_zscore = 0.0;
  int64_t spike_window = 128;
};

// f(key, field&, meaning, util::Range) for every key of [optimizer], in the resolved TOML's order.
template <typename Options, typename F>
void visit_optimizer_options(Options& p, F&& f) {
  using util::Range;
  f("optimizer.name", p.name, "adamw: decoupled weight decay; adam: L2 decay added to the gradient", Range{});
  f("optimizer.lr", p.lr, "peak learning rate", Range::above(0).and_finite());
  f("optimizer.weight_decay", p.weight_decay, "weight decay", Range::at_least(0));
  f("optimizer.betas", p.betas, "Adam β1, β2", Range::half_open(0, 1));
  f("optimizer.eps", p.eps, "Adam ε", Range::above(0));
  f("optimizer.no_decay", p.no_decay,
    "parameters whose name contains one of these get no weight decay (official MGCA: none)", Range{});
  f("optimizer.grad_clip_norm", p.grad_clip_norm, "clip the global gradient L2 norm; 0 = off", Range::at_least(0));
  f("optimizer.accumulate", p.accumulate, "micro-steps per optimizer step (gradients sync on the last)",
    Range::at_least(1));
  f("optimizer.spike_zscore", p.spike_zscore,
    "skip the update when the loss is this many standard deviations above the mean of the last "
    "`optimizer.spike_window` losses (llm.c's detector); 0 = off",
    Range::at_least(0).and_finite());
  f("optimizer.spike_window", p.spike_window, "losses the spike detector compares with (it acts once it has them)",
    Range::at_least(2));
}

}  // namespace mgca::train
