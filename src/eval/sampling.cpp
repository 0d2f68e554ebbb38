#include "mgca/eval/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "mgca/util/error.h"
#include "mgca/util/rng.h"

namespace mgca::eval {

namespace {

constexpr uint64_t kFractionStream = 0x46524143ULL;  // "FRAC"

// Value of label l for row r: 1 positive, 0 known negative, NaN unknown.
double value_of(const Targets& t, int64_t r, int64_t l) {
  if (t.kind == TaskKind::MultiLabel) return t.multilabel.at(r, l);
  const int64_t c = t.classes[r];
  if (c < 0) return NAN;
  return c == l ? 1.0 : 0.0;
}

}  // namespace

FractionSample stratified_fraction(const Targets& targets, double fraction, uint64_t seed) {
  const int64_t n = targets.size();
  MGCA_CHECK(n > 0, "label fraction: no training rows to sample from");
  MGCA_CHECK(fraction > 0.0 && fraction <= 1.0, "label fraction must be in (0, 1], got {}",
             fraction);
  FractionSample out;
  if (fraction >= 1.0) {
    out.requested = n;
    out.rows.resize(n);
    for (int64_t i = 0; i < n; ++i) out.rows[i] = i;
    return out;
  }
  const int64_t m = std::max<int64_t>(1, std::llround(fraction * static_cast<double>(n)));
  out.requested = m;
  const int64_t labels = static_cast<int64_t>(targets.names.size());
  const auto micro = static_cast<uint64_t>(std::llround(fraction * 1e6));
  const std::vector<int64_t> order = util::permutation(n, util::make_key({seed, kFractionStream, micro}));
  util::Rng coin(util::make_key({seed, kFractionStream, micro, 1}));

  const Matrix positive = stratification_matrix(targets);
  std::vector<int64_t> total_pos(labels, 0);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t l = 0; l < labels; ++l) total_pos[l] += positive.at(r, l) == 1.0;
  }

  // assigned[r]: 0 unassigned, 1 subset, 2 rest.
  std::vector<int8_t> assigned(n, 0);
  const double ratio = static_cast<double>(m) / static_cast<double>(n);
  // Desired rows and desired positives per label, for subset (0) and rest (1).
  double want_rows[2] = {static_cast<double>(m), static_cast<double>(n - m)};
  std::vector<double> want[2];
  for (int s = 0; s < 2; ++s) want[s].resize(labels);
  for (int64_t l = 0; l < labels; ++l) {
    want[0][l] = ratio * static_cast<double>(total_pos[l]);
    want[1][l] = static_cast<double>(total_pos[l]) - want[0][l];
  }
  auto assign = [&](int64_t r, int s) {
    assigned[r] = static_cast<int8_t>(s + 1);
    want_rows[s] -= 1.0;
    for (int64_t l = 0; l < labels; ++l) {
      if (positive.at(r, l) == 1.0) want[s][l] -= 1.0;
    }
  };

  // 1. Coverage, rarest label first.
  std::vector<int64_t> by_rarity(labels);
  for (int64_t l = 0; l < labels; ++l) by_rarity[l] = l;
  std::stable_sort(by_rarity.begin(), by_rarity.end(),
                   [&](int64_t a, int64_t b) { return total_pos[a] < total_pos[b]; });
  for (const double wanted_value : {1.0, 0.0}) {
    for (int64_t l : by_rarity) {
      bool covered = false;
      for (int64_t r = 0; r < n && !covered; ++r) {
        covered = assigned[r] == 1 && value_of(targets, r, l) == wanted_value;
      }
      if (covered) continue;
      for (int64_t r : order) {
        if (assigned[r] == 0 && value_of(targets, r, l) == wanted_value) {
          assign(r, 0);
          ++out.coverage_rows;
          break;
        }
      }
    }
  }

  // 2. Iterative stratification over rows with a positive label.
  std::vector<int64_t> unassigned_pos = total_pos;
  for (int64_t r = 0; r < n; ++r) {
    if (assigned[r] == 0) continue;
    for (int64_t l = 0; l < labels; ++l) unassigned_pos[l] -= positive.at(r, l) == 1.0;
  }
  while (true) {
    int64_t label = -1;
    for (int64_t l = 0; l < labels; ++l) {
      if (unassigned_pos[l] > 0 && (label < 0 || unassigned_pos[l] < unassigned_pos[label])) {
        label = l;
      }
    }
    if (label < 0) break;
    for (int64_t r : order) {
      if (assigned[r] != 0 || positive.at(r, label) != 1.0) continue;
      int s;
      if (want[0][label] != want[1][label]) {
        s = want[0][label] > want[1][label] ? 0 : 1;
      } else if (want_rows[0] != want_rows[1]) {
        s = want_rows[0] > want_rows[1] ? 0 : 1;
      } else {
        s = coin.bernoulli(0.5) ? 0 : 1;
      }
      assign(r, s);
      for (int64_t l = 0; l < labels; ++l) unassigned_pos[l] -= positive.at(r, l) == 1.0;
    }
  }

  // 3. Rows without a positive label fill the subset up to its size.
  for (int64_t r : order) {
    if (assigned[r] != 0) continue;
    assign(r, want_rows[0] > 0.5 ? 0 : 1);
  }

  for (int64_t r = 0; r < n; ++r) {
    if (assigned[r] == 1) out.rows.push_back(r);
  }
  return out;
}

}  // namespace mgca::eval
