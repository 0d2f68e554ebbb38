// Seeded, stratified label fractions for the linear probe (1 %, 10 %, 100 %
// of the training labels).
//
// Multi-label stratification is Sechidis et al.'s iterative stratification
// (ECML-PKDD 2011) with two subsets, the kept fraction and the rest, after a
// coverage step that guarantees every label's positives (and negatives)
// are represented:
//  1. Coverage: labels from the rarest up; if the subset has no positive of
//     a label that has one, the first such row of a seeded permutation is
//     added; the same for a known negative (value 0). Multi-class targets are
//     treated as one-hot rows, so every class gets at least one sample.
//  2. Iterative stratification: repeatedly take the label with the fewest
//     unassigned positives; each of its rows (permutation order) goes to the
//     subset that still wants most positives of that label (ties: the one
//     wanting most rows, then a seeded coin); desired counts are
//     fraction × count, minus what coverage already placed.
//  3. Rows with no positive label fill the subset up to its target size.
// The subset can exceed round(fraction·n) only when coverage forces it (at
// most two rows per label); `coverage_rows` says how many were forced.
// Pure host code: the same seed gives the same subset on every rank and
// machine (util::Rng).
#pragma once

#include <cstdint>
#include <vector>

#include "mgca/eval/labels.h"

namespace mgca::eval {

struct FractionSample {
  std::vector<int64_t> rows;   // ascending indices into the targets
  int64_t requested = 0;       // max(1, round(fraction · n)), or n for fraction 1
  int64_t coverage_rows = 0;   // rows added by the coverage step
};

// fraction in (0, 1]; 1 returns every row. Errors: fraction out of range,
// no rows.
FractionSample stratified_fraction(const Targets& targets, double fraction, uint64_t seed);

}  // namespace mgca::eval
