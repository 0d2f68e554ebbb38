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

namespace mgca::train {

struct ScheduleConfig;

struct LrSchedule {
  bool cosine = true;
  double lr = 2e-5;
  double min_lr = 1e-8;
  int64_t total_steps = 1;
  int64_t warmup_steps = 0;

  static LrSchedule from_config(const ScheduleConfig& schedule, double lr, int64_t total_steps);
  // The learning rate of optimizer step `step` (0-based).
  double at(int64_t step) const;
};

}  // namespace mgca::train
