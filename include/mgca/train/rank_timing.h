// Per-rank timing of the logged steps: the spread over ranks of a time (the
// metrics' ranks_* keys) and the straggler rule behind the trainer's warning.
// Pure functions of the gathered per-rank times: every rank that calls them
// with the same gathered values gets the same answer (no collectives here).
#pragma once

#include <cstdint>
#include <vector>

namespace mgca::train {

struct RankSpread {
  double min = 0, median = 0, max = 0;
  int slowest = 0;  // the rank holding max (the lowest such rank on ties)
};

// `per_rank[r]` is rank r's value; not empty. The median of an even count is
// the mean of the two middle values (as numpy.median).
RankSpread rank_spread(const std::vector<double>& per_rank);

// A rank is behind in a logged interval when it made the step `factor`
// times slower than it would have been without it. The collectives of a
// synchronous step make every rank's step time about the same (the others
// wait for the slow one), so the delay shows in the slow rank's own phase:
// its extra data time E (its data time minus the median of the other ranks')
// would have left a step of T - E (T: the median step time), a slowdown of
// T / (T - E). A step time above `factor` times the median of the other
// ranks' (a rank held up after the step's last collective) counts too. A
// rank slowed inside the forward or backward (a slow GPU) is not caught:
// the others' exposed communication grows instead (ranks_comm_s_max).
class StragglerDetector {
 public:
  struct Report {
    int rank = -1;        // -1: no rank has been behind for `intervals` intervals in a row
    double ratio = 0;     // its slowdown of the step, this interval (inf: E >= T)
    int64_t intervals = 0;
  };
  // factor <= 0 turns the detector off (update always returns rank -1).
  StragglerDetector(double factor, int64_t intervals) : factor_(factor), intervals_(intervals) {}
  // One logged interval: step and data time of every rank (index = rank).
  // Reports a rank once, in the interval where it has been behind `intervals`
  // times in a row; it is reported again only after it caught up once.
  Report update(const std::vector<double>& step_s, const std::vector<double>& data_s);

 private:
  double factor_;
  int64_t intervals_;
  int candidate_ = -1;
  int64_t count_ = 0;
};

}  // namespace mgca::train
