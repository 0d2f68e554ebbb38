// Learning rate per optimizer step (no torch).
//
// cosine (the official MGCA/ConVIRT schedule, CosineAnnealingWarmupRestarts
// with one cycle as the official code configures it): for step s of T with
// W = floor(warmup_fraction · T) warm-up steps,
//   s < W:  min_lr + (lr − min_lr) · s / W
//   s ≥ W:  min_lr + (lr − min_lr) · (1 + cos(π (s − W) / (T − W))) / 2
// so step 0 runs at min_lr (1e-8 in the paper setting) and the last step
// just above min_lr. constant: lr at every step.
#pragma once

#include <cstdint>

#include "mgca/util/option_types.h"

namespace mgca::train {

// Cosine: linear warm-up from min_lr, then cosine to min_lr. Constant: lr throughout.
enum class ScheduleKind { Cosine, Constant };
inline constexpr util::NamedValue<ScheduleKind> kScheduleKindNames[] = {{ScheduleKind::Cosine, "cosine"},
                                                                         {ScheduleKind::Constant, "constant"}};
constexpr const auto& enum_names(ScheduleKind) { return kScheduleKindNames; }

// The [schedule] table of a job.
struct ScheduleOptions {
  ScheduleKind name = ScheduleKind::Cosine;
  int64_t epochs = 50;
  int64_t max_steps = 0;         // total optimizer steps; 0 = epochs × steps per epoch
  double warmup_fraction = 0.4;  // of the total steps, linear from min_lr to lr
  double min_lr = 1e-8;
  int64_t stop_after_steps = 0;  // end the run (with a checkpoint) after this step; 0 = run to the end
};

// f(key, field&, meaning, util::Range) for every key of [schedule], in the resolved TOML's order.
template <typename Options, typename F>
void visit_schedule_options(Options& s, F&& f) {
  using util::Range;
  f("schedule.name", s.name, "cosine: linear warm-up from min_lr, then cosine to min_lr", Range{});
  f("schedule.epochs", s.epochs, "epochs over the dataset", Range::at_least(1));
  f("schedule.max_steps", s.max_steps, "total optimizer steps (sets the schedule's length); 0 = all epochs",
    Range::at_least(0));
  f("schedule.warmup_fraction", s.warmup_fraction, "warm-up steps as a fraction of the total", Range::closed(0, 1));
  f("schedule.min_lr", s.min_lr, "learning rate at the start of warm-up and at the end", Range::at_least(0));
  f("schedule.stop_after_steps", s.stop_after_steps,
    "end this run after the step with a checkpoint (the schedule keeps its length); 0 = never", Range::at_least(0));
}

struct LrSchedule {
  bool cosine = true;
  double lr = 2e-5;
  double min_lr = 1e-8;
  int64_t total_steps = 1;
  int64_t warmup_steps = 0;

  static LrSchedule from_config(const ScheduleOptions& schedule, double lr, int64_t total_steps);
  // The learning rate of optimizer step `step` (0-based).
  double at(int64_t step) const;
};

}  // namespace mgca::train
