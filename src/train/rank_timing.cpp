#include "mgca/train/rank_timing.h"

#include <algorithm>
#include <limits>

#include "mgca/util/error.h"

namespace mgca::train {

RankSpread rank_spread(const std::vector<double>& per_rank) {
  MGCA_CHECK(!per_rank.empty(), "rank_spread: no ranks");
  RankSpread s;
  const auto max = std::max_element(per_rank.begin(), per_rank.end());  // the first of equal maxima
  s.max = *max;
  s.slowest = static_cast<int>(max - per_rank.begin());
  s.min = *std::min_element(per_rank.begin(), per_rank.end());
  std::vector<double> sorted = per_rank;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  s.median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  return s;
}

namespace {

// The median of `sorted` (ascending, >= 2 values) without one copy of `value`.
double median_without(const std::vector<double>& sorted, double value) {
  const size_t skip = static_cast<size_t>(std::lower_bound(sorted.begin(), sorted.end(), value) - sorted.begin());
  const size_t m = sorted.size() - 1;
  auto at = [&](size_t j) { return sorted[j < skip ? j : j + 1]; };
  return m % 2 == 1 ? at(m / 2) : (at(m / 2 - 1) + at(m / 2)) / 2;
}

}  // namespace

StragglerDetector::Report StragglerDetector::update(const std::vector<double>& step_s,
                                                    const std::vector<double>& data_s) {
  Report report;
  if (factor_ <= 0 || step_s.size() < 2) return report;
  MGCA_CHECK(step_s.size() == data_s.size(), "straggler detector: {} step times but {} data times", step_s.size(),
             data_s.size());
  const double median_step = rank_spread(step_s).median;
  std::vector<double> sorted_step = step_s, sorted_data = data_s;
  std::sort(sorted_step.begin(), sorted_step.end());
  std::sort(sorted_data.begin(), sorted_data.end());
  int latest = -1;
  double latest_ratio = 0;
  for (size_t r = 0; r < step_s.size(); ++r) {
    const double others_step = median_without(sorted_step, step_s[r]);
    const double extra_data = data_s[r] - median_without(sorted_data, data_s[r]);
    double ratio = others_step > 0 ? step_s[r] / others_step : 0;
    if (extra_data > 0) {
      const double without = median_step - extra_data;
      ratio = std::max(ratio, without > 0 ? median_step / without : std::numeric_limits<double>::infinity());
    }
    if (latest < 0 || ratio > latest_ratio) {
      latest = static_cast<int>(r);
      latest_ratio = ratio;
    }
  }
  const bool behind = latest_ratio > factor_;
  if (!behind) {
    candidate_ = -1;
    count_ = 0;
    return report;
  }
  count_ = latest == candidate_ ? count_ + 1 : 1;
  candidate_ = latest;
  if (count_ == intervals_) {
    report.rank = latest;
    report.ratio = latest_ratio;
    report.intervals = count_;
  }
  return report;
}

}  // namespace mgca::train
