#include "mgca/train/spike_detector.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "mgca/util/error.h"

namespace mgca::train {

LossSpikeDetector::LossSpikeDetector(int64_t window) : window_(window) {
  MGCA_CHECK(window >= 2, "the loss spike window must hold at least 2 losses, got {}", window);
  values_.reserve(static_cast<size_t>(window));
}

double LossSpikeDetector::update(double loss) {
  if (static_cast<int64_t>(values_.size()) < window_) {
    values_.push_back(loss);
    return std::numeric_limits<double>::quiet_NaN();  // not enough losses yet
  }
  values_[static_cast<size_t>(next_)] = loss;
  next_ = (next_ + 1) % window_;
  double sum = 0, sum_sq = 0;
  for (const double v : values_) {
    sum += v;
    sum_sq += v * v;
  }
  const double n = static_cast<double>(window_);
  const double mean = sum / n;
  const double variance = sum_sq / n - mean * mean;
  if (!(variance > 0)) return 0.0;
  return (loss - mean) / std::sqrt(variance);
}

double LossSpikeDetector::max_zscore(int64_t window) { return std::sqrt(static_cast<double>(window - 1)); }

std::string LossSpikeDetector::serialize() const {
  std::string text = fmt::format("{} {}", window_, next_);
  for (const double v : values_) text += fmt::format(" {:.17g}", v);
  return text;
}

void LossSpikeDetector::restore(const std::string& text, const std::string& source) {
  std::istringstream in(text);
  int64_t window = 0, next = 0;
  in >> window >> next;
  MGCA_CHECK(!in.fail() && window == window_ && next >= 0 && next < window_,
             "{}: the loss spike window '{}' does not fit optimizer.spike_window = {}", source,
             text.substr(0, 40), window_);
  std::vector<double> values;
  double v = 0;
  while (in >> v) values.push_back(v);
  MGCA_CHECK(in.eof() && static_cast<int64_t>(values.size()) <= window_ &&
                 (next == 0 || static_cast<int64_t>(values.size()) == window_),
             "{}: the loss spike window is not {} numbers", source, window_);
  values_ = std::move(values);
  next_ = next;
}

}  // namespace mgca::train
