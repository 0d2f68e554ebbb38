#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "mgca/util/error.h"
#include "mgca/util/progress.h"
#include "mgca/util/rng.h"

namespace mgca::util {
namespace {

TEST(Error, CarriesRankFileAndLine) {
  set_process_rank(3);
  try {
    MGCA_FAIL("tensor '{}' has {} dims", "x", 2);
    FAIL() << "MGCA_FAIL returned";
  } catch (const Error& error) {
    EXPECT_EQ(error.rank(), 3);
    EXPECT_EQ(error.message(), "tensor 'x' has 2 dims");
    EXPECT_TRUE(error.location().rfind("tests/unit/util/test_util.cpp:", 0) == 0) << error.location();
    EXPECT_NE(std::string(error.what()).find("[rank 3] tests/unit/util/test_util.cpp:"), std::string::npos)
        << error.what();
  }
  set_process_rank(-1);
}

TEST(Error, CheckPassesAndFails) {
  EXPECT_NO_THROW(MGCA_CHECK(1 + 1 == 2, "arithmetic"));
  EXPECT_THROW(MGCA_CHECK(1 + 1 == 3, "arithmetic {}", 3), Error);
}

TEST(Rng, SameKeySameStream) {
  Rng a(make_key({1, 2, 3}));
  Rng b(make_key({1, 2, 3}));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  Rng c(make_key({1, 2, 4}));
  EXPECT_NE(Rng(make_key({1, 2, 3})).next_u64(), c.next_u64());
}

TEST(Rng, KnownFirstValuesPinTheStream) {
  // Pinned so that a change of the generator (which would change every
  // augmentation and break resume of old runs) cannot go unnoticed.
  Rng rng(0);
  const uint64_t first = rng.next_u64();
  Rng again(0);
  EXPECT_EQ(again.next_u64(), first);
  EXPECT_EQ(mix64(0), 0xE220A8397B1DCDAFULL);
}

TEST(Rng, UniformAndRandintRanges) {
  Rng rng(42);
  double sum = 0;
  constexpr int kDraws = 200000;
  std::vector<int> counts(7, 0);
  for (int i = 0; i < kDraws; ++i) {
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    const int64_t k = rng.randint(-3, 4);
    ASSERT_GE(k, -3);
    ASSERT_LT(k, 4);
    counts[static_cast<size_t>(k + 3)]++;
  }
  EXPECT_NEAR(sum / kDraws, 0.5, 0.005);
  for (int count : counts) EXPECT_NEAR(count, kDraws / 7.0, kDraws / 7.0 * 0.03);
}

TEST(Rng, NormalMoments) {
  Rng rng(7);
  double sum = 0, sum_sq = 0;
  constexpr int kDraws = 200000;
  for (int i = 0; i < kDraws; ++i) {
    const double x = rng.normal();
    sum += x;
    sum_sq += x * x;
  }
  EXPECT_NEAR(sum / kDraws, 0.0, 0.01);
  EXPECT_NEAR(sum_sq / kDraws, 1.0, 0.02);
}

TEST(Rng, StateRoundTrip) {
  Rng rng(5);
  rng.next_u64();
  const auto saved = rng.state();
  const uint64_t expected = rng.next_u64();
  Rng other(99);
  other.set_state(saved);
  EXPECT_EQ(other.next_u64(), expected);
  EXPECT_THROW(other.set_state({0, 0, 0, 0}), Error);
}

TEST(Rng, PermutationIsAPermutationAndKeyed) {
  const auto p = permutation(1000, 11);
  std::set<int64_t> seen(p.begin(), p.end());
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 999);
  EXPECT_EQ(p, permutation(1000, 11));
  EXPECT_NE(p, permutation(1000, 12));
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(Progress::format_duration(12.2), "12s");
  EXPECT_EQ(Progress::format_duration(185), "3m05s");
  EXPECT_EQ(Progress::format_duration(3720), "1h02m");
  EXPECT_EQ(Progress::format_duration(-1), "?");
}

}  // namespace
}  // namespace mgca::util
