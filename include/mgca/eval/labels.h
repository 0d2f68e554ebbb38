// Label policies: which label columns a task uses and what happens to
// uncertain (−1) and missing (NaN) entries before training and scoring.
//
// Dataset files store labels float32 [n, L] with 1 positive, 0 negative,
// −1 uncertain, NaN missing (docs/contract.md §5.1). A policy turns them into the task's
// targets: 0/1/NaN per label for multi-label tasks (NaN = not scored, not
// trained on), or one class index per sample for multi-class tasks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mgca/eval/metrics.h"

namespace mgca::eval {

enum class TaskKind { MultiLabel, MultiClass };

// CheXpert's 5 competition labels in MGCA's order (constants.py:
// CHEXPERT_COMPETITION_TASKS).
const std::vector<std::string>& chexpert_competition_labels();

// MGCA's uncertainty mapping (constants.py CHEXPERT_UNCERTAIN_MAPPINGS, used by
// CheXpertImageDataset): −1 → 1 (U-ones) for Atelectasis, Edema and Pleural
// Effusion; −1 → 0 (U-zeros) for Cardiomegaly and Consolidation. Blank
// entries (NaN) become 0 (the dataset calls df.fillna(0) first).
// Returns the value −1 maps to for one of the 5 labels; error otherwise.
double chexpert_mgca_uncertain_value(const std::string& label);

enum class LabelPolicy {
  // Keep every column; −1 (uncertain) → NaN; NaN stays missing. Multi-label.
  Ignore,
  // Keep the 5 CheXpert competition columns (found by name, any order in
  // the file), map −1 and NaN as MGCA does (above). Multi-label.
  ChexpertMgca,
  // One class per sample: a one-hot row (exactly one 1, the rest 0) gives
  // its column; a row with no 1 is missing (class −1). Multi-class.
  MultiClass,
};

// Parses "ignore", "chexpert-mgca", "multiclass"; error lists the valid names.
LabelPolicy parse_label_policy(const std::string& name);
std::string label_policy_name(LabelPolicy policy);

// The task a policy produces from a dataset's labels.
struct Targets {
  TaskKind kind = TaskKind::MultiLabel;
  std::vector<std::string> names;  // label names (multi-label) or class names (multi-class)
  Matrix multilabel;               // [n, L] of 0/1/NaN (kind MultiLabel)
  std::vector<int64_t> classes;    // [n], −1 = missing (kind MultiClass)
  int64_t size() const;
};

// Applies `policy` to `labels` [n, L] whose columns are `names`. Errors name
// the dataset (`source`) and the label: a missing CheXpert column, a value
// other than 1/0/−1/NaN, a multi-class row with two 1s.
Targets apply_label_policy(LabelPolicy policy, const Matrix& labels,
                           const std::vector<std::string>& names, const std::string& source);

// The policy a dataset gets when the user does not choose one: ChexpertMgca
// when all 5 competition labels are present, MultiClass when every labelled
// row is one-hot over ≥ 3 columns, Ignore otherwise.
LabelPolicy default_label_policy(const Matrix& labels, const std::vector<std::string>& names);

// The subset of rows `rows` of targets (same kind and names).
Targets select_rows(const Targets& targets, const std::vector<int64_t>& rows);

// Multi-label positives as a stratification matrix: multi-class targets
// become one-hot rows (missing → all zero); NaN → 0.
Matrix stratification_matrix(const Targets& targets);

}  // namespace mgca::eval
