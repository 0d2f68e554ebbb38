// Rank-0 progress: a bar with rate and ETA on a terminal, plain periodic lines
// in batch logs (SLURM's slurm-N.out is not a terminal).
#pragma once

#include <cstdint>
#include <string>

#include "mgca/util/timer.h"

namespace mgca::util {

class Progress {
 public:
  // total: steps in the run; first: the step it starts from (resume);
  // plain_interval_s: seconds between lines when stderr is not a terminal.
  Progress(std::string label, int64_t total, int64_t first = 0, double plain_interval_s = 30.0);
  // Report that `done` steps are complete; `status` is appended (e.g. "loss 2.31").
  // Prints only on rank 0; cheap when nothing is due.
  void update(int64_t done, const std::string& status = "");
  // Final line (always printed on rank 0).
  void finish(const std::string& status = "");

  // "1h02m", "3m05s", "12s".
  static std::string format_duration(double seconds);

 private:
  std::string line(int64_t done, const std::string& status) const;

  std::string label_;
  int64_t total_;
  int64_t first_;
  double plain_interval_s_;
  bool terminal_;
  bool enabled_;
  Stopwatch watch_;
  double last_print_s_ = -1e30;
  int64_t last_done_ = 0;
};

}  // namespace mgca::util
