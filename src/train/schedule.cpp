#include "mgca/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "mgca/train/config.h"
#include "mgca/util/error.h"

namespace mgca::train {

LrSchedule LrSchedule::from_config(const ScheduleOptions& schedule, double lr, int64_t total_steps) {
  MGCA_CHECK(total_steps >= 1, "schedule: the run has {} optimizer steps (dataset smaller than one global batch?)",
             total_steps);
  LrSchedule s;
  s.cosine = schedule.name == ScheduleKind::Cosine;
  s.lr = lr;
  s.min_lr = schedule.min_lr;
  s.total_steps = total_steps;
  // int(T * 0.4) as the official code computes it.
  s.warmup_steps = static_cast<int64_t>(static_cast<double>(total_steps) * schedule.warmup_fraction);
  return s;
}

double LrSchedule::at(int64_t step) const {
  if (!cosine) return lr;
  if (step < warmup_steps) {
    return (lr - min_lr) * static_cast<double>(step) / static_cast<double>(warmup_steps) + min_lr;
  }
  const int64_t span = std::max<int64_t>(total_steps - warmup_steps, 1);
  const double progress = static_cast<double>(std::min(step, total_steps) - warmup_steps) / static_cast<double>(span);
  return min_lr + (lr - min_lr) * (1 + std::cos(M_PI * progress)) / 2;
}

}  // namespace mgca::train
