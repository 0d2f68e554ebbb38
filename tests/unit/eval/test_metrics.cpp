// Metrics against hand-computed cases and the pairwise definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "mgca/eval/metrics.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::eval {
namespace {

using test::error_of;

// AUROC by its definition over all (positive, negative) pairs, ties ½.
double pairwise_auroc(const std::vector<double>& s, const std::vector<double>& y) {
  double wins = 0.0, pairs = 0.0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (y[i] != 1.0) continue;
    for (size_t j = 0; j < s.size(); ++j) {
      if (y[j] != 0.0) continue;
      pairs += 1.0;
      wins += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
    }
  }
  return wins / pairs;
}

TEST(Auroc, HandComputedWithoutTies) {
  // Pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 → 3/4.
  EXPECT_DOUBLE_EQ(auroc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}), 0.75);
  EXPECT_DOUBLE_EQ(auroc({0.1, 0.2, 0.3, 0.4}, {0, 0, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(auroc({0.1, 0.2, 0.3, 0.4}, {1, 1, 0, 0}), 0.0);
}

TEST(Auroc, TiesCountOneHalf) {
  // Positives 0.5 and 0.9, negatives 0.2 and 0.5: 1 + ½ + 1 + 1 = 3.5 of 4.
  EXPECT_DOUBLE_EQ(auroc({0.2, 0.5, 0.5, 0.9}, {0, 0, 1, 1}), 0.875);
  // All scores equal: every pair is a tie.
  EXPECT_DOUBLE_EQ(auroc({0.3, 0.3, 0.3, 0.3, 0.3}, {0, 1, 0, 1, 1}), 0.5);
  // A tie run spanning both classes in the middle of the ranking:
  // neg 0.1, {pos .5, pos .5, neg .5}, pos .7 → pairs: pos .5 × (neg .1: 1, neg .5: ½) twice = 3,
  // pos .7 × 2 negs = 2 → 5 of 6.
  EXPECT_DOUBLE_EQ(auroc({0.1, 0.5, 0.5, 0.5, 0.7}, {0, 1, 1, 0, 1}), 5.0 / 6.0);
}

TEST(Auroc, MatchesPairwiseDefinitionOnRandomTiedScores) {
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> level(0, 9);  // 10 score levels: many ties
  std::bernoulli_distribution coin(0.3);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> s(200), y(200);
    for (size_t i = 0; i < s.size(); ++i) {
      s[i] = level(gen) / 10.0;
      y[i] = coin(gen) ? 1.0 : 0.0;
    }
    y[0] = 1.0;
    y[1] = 0.0;
    EXPECT_NEAR(auroc(s, y), pairwise_auroc(s, y), 1e-12);
  }
}

TEST(Auroc, NanLabelsAreSkipped) {
  const double nan = NAN;
  // The NaN-labelled samples (with any score, even NaN) do not change the result.
  EXPECT_DOUBLE_EQ(auroc({0.1, 0.9, 0.4, 0.35, nan, 0.8}, {0, nan, 0, 1, nan, 1}), 0.75);
}

TEST(Auroc, OneClassOnlyIsAClearError) {
  const std::string text = error_of([] { auroc({0.1, 0.2, 0.3}, {1, 1, NAN}, "Edema"); });
  EXPECT_NE(text.find("AUROC of 'Edema' is undefined"), std::string::npos) << text;
  EXPECT_NE(text.find("2 positive and 0 negative"), std::string::npos) << text;
  EXPECT_NE(text.find("skipping 1 missing"), std::string::npos) << text;
  EXPECT_NE(text.find("metrics.cpp"), std::string::npos) << text;
}

TEST(Auroc, BadInputsAreErrors) {
  EXPECT_NE(error_of([] { auroc({0.1, 0.2}, {1, -1}, "Atelectasis"); }).find("label policy"),
            std::string::npos);
  EXPECT_NE(error_of([] { auroc({0.1, 0.2}, {1}, "x"); }).find("2 scores but 1 labels"),
            std::string::npos);
  EXPECT_NE(error_of([] { auroc({NAN, 0.2}, {1, 0}, "x"); }).find("NaN score"), std::string::npos);
}

TEST(Auroc, MultilabelPerLabelAndMacro) {
  Matrix scores(4, 2), labels(4, 2);
  const double s[4][2] = {{0.1, 0.9}, {0.4, 0.8}, {0.35, 0.1}, {0.8, 0.2}};
  const double y[4][2] = {{0, 1}, {0, 1}, {1, 0}, {1, NAN}};
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 2; ++c) {
      scores.at(r, c) = s[r][c];
      labels.at(r, c) = y[r][c];
    }
  }
  const auto report = auroc_multilabel(scores, labels, {"A", "B"});
  ASSERT_EQ(report.per_label.size(), 2u);
  EXPECT_DOUBLE_EQ(report.per_label[0], 0.75);
  EXPECT_DOUBLE_EQ(report.per_label[1], 1.0);  // positives .9,.8 over negative .1
  EXPECT_DOUBLE_EQ(report.macro, 0.875);
  EXPECT_EQ(report.positives, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(report.negatives, (std::vector<int64_t>{2, 1}));
  labels.at(2, 1) = 1.0;  // label B now has positives only
  const std::string text = error_of([&] { auroc_multilabel(scores, labels, {"A", "B"}); });
  EXPECT_NE(text.find("AUROC of 'B' is undefined"), std::string::npos) << text;
}

TEST(Accuracy, SkipsMissingAndCounts) {
  EXPECT_DOUBLE_EQ(accuracy({0, 1, 2, 1}, {0, 2, 2, -1}), 2.0 / 3.0);
  EXPECT_THROW(accuracy({0}, {-1}), mgca::Error);
  EXPECT_THROW(accuracy({0, 1}, {0}), mgca::Error);
  Matrix m(2, 3);
  m.values = {0.1, 0.7, 0.7, 0.5, 0.2, 0.1};
  EXPECT_EQ(argmax_rows(m), (std::vector<int64_t>{1, 0}));  // first maximum on ties
}

TEST(Recall, HandComputedRanksAndChance) {
  Matrix sim(3, 3);
  sim.values = {0.9, 0.1, 0.2,   // query 0: its target scores best → rank 0
                0.8, 0.3, 0.5,   // query 1: two candidates above → rank 2
                0.4, 0.4, 0.4};  // query 2: ties count against → rank 2
  const auto r = recall_at_k(sim, {0, 1, 2}, {}, {1, 2, 3});
  EXPECT_DOUBLE_EQ(r.recall[0], 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.recall[1], 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.recall[2], 1.0);
  EXPECT_DOUBLE_EQ(r.chance[0], 1.0 / 3.0);  // K/N with one correct candidate
  EXPECT_DOUBLE_EQ(r.chance[1], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.chance[2], 1.0);
  EXPECT_DOUBLE_EQ(r.median_rank, 3.0);  // ranks 1, 3, 3 (1-based)
  EXPECT_DOUBLE_EQ(r.mean_rank, 7.0 / 3.0);

  // Candidates 0 and 1 share a group: query 1's best correct is 0.8, above 0.5.
  const auto g = recall_at_k(sim, {0, 1, 2}, {0, 0, 1}, {1});
  EXPECT_DOUBLE_EQ(g.recall[0], 2.0 / 3.0);  // queries 0 and 1 hit; query 2 ties
  // Chance per query: groups of 2, 2, 1 among 3 → (2/3 + 2/3 + 1/3)/3.
  EXPECT_DOUBLE_EQ(g.chance[0], 5.0 / 9.0);
}

TEST(Recall, ChanceFormula) {
  EXPECT_DOUBLE_EQ(recall_chance(10, 1, 5), 0.5);
  EXPECT_DOUBLE_EQ(recall_chance(10, 2, 1), 0.2);
  EXPECT_NEAR(recall_chance(10, 2, 2), 1.0 - (8.0 / 10.0) * (7.0 / 9.0), 1e-15);
  EXPECT_DOUBLE_EQ(recall_chance(10, 1, 20), 1.0);
  EXPECT_THROW(recall_chance(10, 0, 1), mgca::Error);
}

TEST(Recall, BadInputsAreErrors) {
  Matrix sim(2, 2);
  EXPECT_THROW(recall_at_k(sim, {0}, {}, {1}), mgca::Error);
  EXPECT_THROW(recall_at_k(sim, {0, 2}, {}, {1}), mgca::Error);
  EXPECT_THROW(recall_at_k(sim, {0, 1}, {0}, {1}), mgca::Error);
  EXPECT_THROW(recall_at_k(sim, {0, 1}, {}, {0}), mgca::Error);
  sim.at(1, 0) = NAN;
  EXPECT_NE(error_of([&] { recall_at_k(sim, {0, 1}, {}, {1}); }).find("query 1, candidate 0"),
            std::string::npos);
}

TEST(MeanStd, SampleStandardDeviation) {
  const auto ms = mean_std({0.85, 0.90});
  EXPECT_DOUBLE_EQ(ms.mean, 0.875);
  EXPECT_NEAR(ms.std, std::sqrt(2 * 0.025 * 0.025), 1e-15);
  EXPECT_DOUBLE_EQ(mean_std({0.3}).std, 0.0);
}

}  // namespace
}  // namespace mgca::eval
