// Label policies (MGCA's CheXpert mapping) and the stratified label fractions.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <set>

#include "mgca/eval/labels.h"
#include "mgca/eval/sampling.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::eval {
namespace {

using test::error_of;

// The 14 CheXpert labels in the order of shared/data/openi/file2label.json.
const std::vector<std::string> kChexpert14 = {
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
    "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion",
    "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices"};

TEST(LabelPolicy, ChexpertMgcaMapsUncertainAndBlankAsMgca) {
  const double nan = NAN;
  Matrix labels(3, 14, 0.0);
  // Row 0: every competition label uncertain; row 1: every one blank; row 2: 1/0 kept.
  for (const char* name : {"Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"}) {
    const int64_t c = std::find(kChexpert14.begin(), kChexpert14.end(), name) - kChexpert14.begin();
    labels.at(0, c) = -1.0;
    labels.at(1, c) = nan;
  }
  labels.at(2, 0) = 1.0;  // Atelectasis
  labels.at(2, 9) = 1.0;  // Pleural Effusion
  labels.at(2, 3) = 0.0;  // Edema
  labels.at(0, 12) = nan;  // a non-competition column is ignored
  const Targets t = apply_label_policy(LabelPolicy::ChexpertMgca, labels, kChexpert14, "chexpert");
  ASSERT_EQ(t.kind, TaskKind::MultiLabel);
  EXPECT_EQ(t.names, chexpert_competition_labels());
  ASSERT_EQ(t.multilabel.cols, 5);
  // U-ones: Atelectasis, Edema, Pleural Effusion; U-zeros: Cardiomegaly, Consolidation.
  EXPECT_EQ(t.multilabel.values[0 * 5 + 0], 1.0);
  EXPECT_EQ(t.multilabel.values[0 * 5 + 1], 0.0);
  EXPECT_EQ(t.multilabel.values[0 * 5 + 2], 0.0);
  EXPECT_EQ(t.multilabel.values[0 * 5 + 3], 1.0);
  EXPECT_EQ(t.multilabel.values[0 * 5 + 4], 1.0);
  for (int c = 0; c < 5; ++c) EXPECT_EQ(t.multilabel.at(1, c), 0.0) << c;  // fillna(0)
  EXPECT_EQ(t.multilabel.at(2, 0), 1.0);
  EXPECT_EQ(t.multilabel.at(2, 4), 1.0);
  EXPECT_EQ(t.multilabel.at(2, 1), 0.0);
}

TEST(LabelPolicy, ChexpertMgcaNeedsEveryColumn) {
  std::vector<std::string> names = kChexpert14;
  names[9] = "Effusion";
  const std::string text = error_of(
      [&] { apply_label_policy(LabelPolicy::ChexpertMgca, Matrix(2, 14), names, "openi-test"); });
  EXPECT_NE(text.find("openi-test"), std::string::npos) << text;
  EXPECT_NE(text.find("'Pleural Effusion'"), std::string::npos) << text;
  EXPECT_THROW(chexpert_mgca_uncertain_value("Fracture"), mgca::Error);
}

TEST(LabelPolicy, IgnoreTurnsUncertainIntoMissing) {
  Matrix labels(2, 2);
  labels.values = {1, -1, NAN, 0};
  const Targets t = apply_label_policy(LabelPolicy::Ignore, labels, {"a", "b"}, "synth");
  EXPECT_EQ(t.multilabel.at(0, 0), 1.0);
  EXPECT_TRUE(std::isnan(t.multilabel.at(0, 1)));
  EXPECT_TRUE(std::isnan(t.multilabel.at(1, 0)));
  EXPECT_EQ(t.multilabel.at(1, 1), 0.0);
}

TEST(LabelPolicy, BadValuesAndMultiClassRows) {
  Matrix labels(2, 3, 0.0);
  labels.at(1, 2) = 0.5;
  const std::string bad = error_of(
      [&] { apply_label_policy(LabelPolicy::Ignore, labels, {"a", "b", "c"}, "set"); });
  EXPECT_NE(bad.find("label 'c' of sample 1 is 0.5"), std::string::npos) << bad;

  Matrix onehot(3, 3, 0.0);
  onehot.at(0, 2) = 1.0;
  onehot.at(2, 0) = 1.0;  // row 1 has no class: missing
  const Targets t = apply_label_policy(LabelPolicy::MultiClass, onehot, {"a", "b", "c"}, "set");
  EXPECT_EQ(t.kind, TaskKind::MultiClass);
  EXPECT_EQ(t.classes, (std::vector<int64_t>{2, -1, 0}));
  onehot.at(0, 1) = 1.0;
  const std::string two = error_of(
      [&] { apply_label_policy(LabelPolicy::MultiClass, onehot, {"a", "b", "c"}, "set"); });
  EXPECT_NE(two.find("sample 0 is positive for both 'b' and 'c'"), std::string::npos) << two;
  EXPECT_NE(error_of([] { parse_label_policy("u-ones"); }).find("valid: ignore, chexpert-mgca"),
            std::string::npos);
}

TEST(LabelPolicy, Defaults) {
  EXPECT_EQ(default_label_policy(Matrix(2, 14), kChexpert14), LabelPolicy::ChexpertMgca);
  Matrix onehot(2, 3, 0.0);
  onehot.at(0, 1) = 1.0;
  onehot.at(1, 2) = 1.0;
  EXPECT_EQ(default_label_policy(onehot, {"a", "b", "c"}), LabelPolicy::MultiClass);
  onehot.at(1, 0) = 1.0;
  EXPECT_EQ(default_label_policy(onehot, {"a", "b", "c"}), LabelPolicy::Ignore);
  EXPECT_EQ(default_label_policy(Matrix(2, 1), {"Target"}), LabelPolicy::Ignore);
}

// Multi-label targets with very different prevalences.
Targets random_multilabel(int64_t n, const std::vector<double>& prevalence, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Targets t;
  t.kind = TaskKind::MultiLabel;
  for (size_t l = 0; l < prevalence.size(); ++l) t.names.push_back("L" + std::to_string(l));
  t.multilabel = Matrix(n, static_cast<int64_t>(prevalence.size()));
  for (int64_t r = 0; r < n; ++r) {
    for (size_t l = 0; l < prevalence.size(); ++l) {
      const double x = u(gen);
      t.multilabel.at(r, static_cast<int64_t>(l)) = x < 0.02 ? NAN : (u(gen) < prevalence[l] ? 1.0 : 0.0);
    }
  }
  return t;
}

int64_t count_value(const Targets& t, const std::vector<int64_t>& rows, int64_t l, double v) {
  int64_t k = 0;
  for (int64_t r : rows) k += t.multilabel.at(r, l) == v;
  return k;
}

TEST(Stratify, FullFractionIsEverything) {
  const Targets t = random_multilabel(50, {0.3}, 1);
  const auto s = stratified_fraction(t, 1.0, 42);
  ASSERT_EQ(s.rows.size(), 50u);
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(s.rows[i], i);
}

TEST(Stratify, EveryLabelsPositivesAndNegativesAreRepresented) {
  const std::vector<double> prevalence = {0.004, 0.02, 0.1, 0.3, 0.97};
  const Targets t = random_multilabel(2000, prevalence, 3);
  for (double fraction : {0.01, 0.1}) {
    for (uint64_t seed : {0, 1, 2, 3, 4}) {
      const auto s = stratified_fraction(t, fraction, seed);
      const std::set<int64_t> unique(s.rows.begin(), s.rows.end());
      EXPECT_EQ(unique.size(), s.rows.size());
      EXPECT_TRUE(std::is_sorted(s.rows.begin(), s.rows.end()));
      EXPECT_EQ(s.requested, std::llround(fraction * 2000));
      // Size: the requested count plus at most the rows coverage forced in.
      EXPECT_GE(static_cast<int64_t>(s.rows.size()), s.requested);
      EXPECT_LE(static_cast<int64_t>(s.rows.size()), s.requested + s.coverage_rows);
      EXPECT_LE(s.coverage_rows, 2 * static_cast<int64_t>(prevalence.size()));
      for (int64_t l = 0; l < 5; ++l) {
        EXPECT_GE(count_value(t, s.rows, l, 1.0), 1) << "label " << l << " fraction " << fraction;
        EXPECT_GE(count_value(t, s.rows, l, 0.0), 1) << "label " << l << " fraction " << fraction;
      }
      if (fraction == 0.1) {
        // Stratified: each label's positives within 2 of fraction × total.
        std::vector<int64_t> all(2000);
        for (int64_t i = 0; i < 2000; ++i) all[i] = i;
        for (int64_t l = 0; l < 5; ++l) {
          const double expected = fraction * static_cast<double>(count_value(t, all, l, 1.0));
          EXPECT_NEAR(static_cast<double>(count_value(t, s.rows, l, 1.0)), expected, 2.0)
              << "label " << l << " seed " << seed;
        }
      }
    }
  }
}

TEST(Stratify, SeededAndDeterministic) {
  const Targets t = random_multilabel(500, {0.1, 0.4}, 5);
  const auto a = stratified_fraction(t, 0.1, 7);
  const auto b = stratified_fraction(t, 0.1, 7);
  const auto c = stratified_fraction(t, 0.1, 8);
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_NE(a.rows, c.rows);
}

TEST(Stratify, MultiClassProportions) {
  Targets t;
  t.kind = TaskKind::MultiClass;
  t.names = {"a", "b", "c"};
  for (int i = 0; i < 600; ++i) t.classes.push_back(0);
  for (int i = 0; i < 300; ++i) t.classes.push_back(1);
  for (int i = 0; i < 100; ++i) t.classes.push_back(2);
  for (int i = 0; i < 10; ++i) t.classes.push_back(-1);
  const auto s = stratified_fraction(t, 0.1, 3);
  std::vector<int64_t> counts(4, 0);
  for (int64_t r : s.rows) counts[t.classes[r] + 1]++;
  EXPECT_NEAR(counts[1], 60, 1);
  EXPECT_NEAR(counts[2], 30, 1);
  EXPECT_NEAR(counts[3], 10, 1);
  EXPECT_EQ(static_cast<int64_t>(s.rows.size()), s.requested);
  // 1 %: the rare class is still present.
  const auto tiny = stratified_fraction(t, 0.01, 3);
  std::set<int64_t> present;
  for (int64_t r : tiny.rows) present.insert(t.classes[r]);
  EXPECT_TRUE(present.count(0) && present.count(1) && present.count(2));
}

TEST(Stratify, BadFractionsAreErrors) {
  const Targets t = random_multilabel(10, {0.5}, 1);
  EXPECT_THROW(stratified_fraction(t, 0.0, 1), mgca::Error);
  EXPECT_THROW(stratified_fraction(t, 1.5, 1), mgca::Error);
  EXPECT_THROW(stratified_fraction(Targets{}, 0.5, 1), mgca::Error);
}

}  // namespace
}  // namespace mgca::eval
