// Loss spikes: llm.c's outlier detector (llmc/outlier_detector.h). No torch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mgca::train {

// The z-score of each new loss against a window of the last `window` losses,
// the new one included (as llm.c: a value's z-score is therefore at most
// sqrt(window - 1)). Mean and variance are recomputed from the window each
// time (llm.c keeps running sums), so a restored detector continues bit for
// bit. The trainer feeds it the global loss, the same on every rank.
class LossSpikeDetector {
 public:
  explicit LossSpikeDetector(int64_t window);
  // Adds `loss` (replacing the oldest once the window is full) and returns
  // its z-score; NaN for the first `window` losses (they fill the window, as
  // in llm.c), 0 when the window is constant.
  double update(double loss);
  // The largest z-score update() can return in a window of `window`: sqrt(window - 1).
  static double max_zscore(int64_t window);
  // The window as text (checkpoint metadata) and back; restore() checks
  // that the text is a window of this size and names `source` otherwise.
  std::string serialize() const;
  void restore(const std::string& text, const std::string& source);

 private:
  std::vector<double> values_;  // filled up to `window` entries, then a ring
  int64_t window_;
  int64_t next_ = 0;            // the slot the next value replaces once full
};

}  // namespace mgca::train
