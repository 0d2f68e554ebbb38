// Per-rank timing (train/rank_timing.h): the spread over ranks and the
// straggler rule, on hand-computed cases.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "mgca/train/rank_timing.h"

namespace mgca::train {
namespace {

TEST(RankSpread, MinMedianMaxAndTheSlowestRank) {
  const RankSpread odd = rank_spread({0.3, 0.9, 0.1});
  EXPECT_DOUBLE_EQ(odd.min, 0.1);
  EXPECT_DOUBLE_EQ(odd.median, 0.3);
  EXPECT_DOUBLE_EQ(odd.max, 0.9);
  EXPECT_EQ(odd.slowest, 1);
  const RankSpread even = rank_spread({0.4, 0.1, 0.2, 0.4});
  EXPECT_DOUBLE_EQ(even.median, 0.3);  // the mean of the two middle values
  EXPECT_EQ(even.slowest, 0);           // the lowest rank on ties
  const RankSpread one = rank_spread({0.25});
  EXPECT_DOUBLE_EQ(one.min, 0.25);
  EXPECT_DOUBLE_EQ(one.median, 0.25);
  EXPECT_DOUBLE_EQ(one.max, 0.25);
  EXPECT_EQ(one.slowest, 0);
}

// Two ranks, the second held up 0.5 s in its data phase: both see a 0.8 s
// step (rank 0 waits in the collectives); without the delay it would be
// 0.3 s, a slowdown of 0.8 / 0.3 = 2.67.
TEST(StragglerDetector, ReportsARankBehindForTheGivenIntervalsInARowOnce) {
  StragglerDetector detector(1.5, 3);
  const std::vector<double> step = {0.8, 0.8}, data = {0.01, 0.51};
  EXPECT_EQ(detector.update(step, data).rank, -1);
  EXPECT_EQ(detector.update(step, data).rank, -1);
  const auto report = detector.update(step, data);
  EXPECT_EQ(report.rank, 1);
  EXPECT_EQ(report.intervals, 3);
  EXPECT_NEAR(report.ratio, 0.8 / 0.3, 1e-12);
  EXPECT_EQ(detector.update(step, data).rank, -1) << "reported once";
  EXPECT_EQ(detector.update({0.3, 0.3}, {0.01, 0.01}).rank, -1);  // caught up
  EXPECT_EQ(detector.update(step, data).rank, -1);
  EXPECT_EQ(detector.update(step, data).rank, -1);
  EXPECT_EQ(detector.update(step, data).rank, 1) << "behind again after catching up";
}

TEST(StragglerDetector, AnInterruptedRunOfSlowIntervalsStartsOver) {
  StragglerDetector detector(1.5, 2);
  const std::vector<double> step = {0.8, 0.8, 0.8}, slow_2 = {0.01, 0.01, 0.51}, slow_0 = {0.51, 0.01, 0.01};
  EXPECT_EQ(detector.update(step, slow_2).rank, -1);
  EXPECT_EQ(detector.update(step, slow_0).rank, -1);  // another rank: counts from 1
  EXPECT_EQ(detector.update(step, slow_0).rank, 0);
}

TEST(StragglerDetector, ARankWhoseOwnStepIsLongIsBehind) {
  StragglerDetector detector(1.5, 1);
  const auto report = detector.update({0.2, 0.2, 0.5, 0.2}, {0.01, 0.01, 0.01, 0.01});
  EXPECT_EQ(report.rank, 2);
  EXPECT_NEAR(report.ratio, 2.5, 1e-12);
}

TEST(StragglerDetector, QuietBelowTheFactorOffAtZeroAndAtOneRank) {
  // 0.1 s of extra data time in a 0.8 s step: 0.8 / 0.7 = 1.14 < 1.5.
  StragglerDetector below(1.5, 1);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(below.update({0.8, 0.8}, {0.01, 0.11}).rank, -1);
  StragglerDetector off(0, 1);
  EXPECT_EQ(off.update({0.8, 0.8}, {0.01, 0.51}).rank, -1);
  StragglerDetector single(1.5, 1);
  EXPECT_EQ(single.update({0.8}, {0.5}).rank, -1);
}

TEST(StragglerDetector, ExtraDataTimeBeyondTheStepIsAnInfiniteSlowdown) {
  StragglerDetector detector(1.5, 1);
  const auto report = detector.update({0.5, 0.5}, {0.0, 0.6});  // clocks disagree: still behind
  EXPECT_EQ(report.rank, 1);
  EXPECT_TRUE(std::isinf(report.ratio));
}

}  // namespace
}  // namespace mgca::train
