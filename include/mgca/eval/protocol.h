// The evaluation protocols on extracted features/embeddings, producing
// Results rows: the linear-probe grid (label fractions × seeds), retrieval
// and zero-shot. Single process (rank 0, after extraction).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mgca/eval/labels.h"
#include "mgca/eval/probe.h"
#include "mgca/eval/results.h"
#include "mgca/eval/retrieval.h"

namespace mgca::eval {

// Features [n, D] of one split with its targets.
struct LabelledFeatures {
  torch::Tensor features;
  Targets targets;
};

struct ProbeGridOptions {
  std::vector<double> fractions = {0.01, 0.1, 1.0};
  int64_t seeds = 3;       // seeds base_seed, base_seed + 1, ...
  uint64_t base_seed = 0;
  ProbeOptions probe;
};

// "1%", "10%", "100%", "0.5%".
std::string fraction_label(double fraction);

// For each fraction and seed: a stratified subset of `train` (seeded),
// a probe trained with early stopping on `val`, scored on `test` (macro
// AUROC for multi-label, accuracy for multi-class). Adds one entry per
// fraction to `results` (row `method`, column (`dataset`, fraction)), with
// per-seed details: subset size, epochs, best epoch, validation loss and
// per-label AUROC. Errors name the method and dataset.
void run_probe_grid(const std::string& method, const std::string& dataset,
                    const LabelledFeatures& train, const LabelledFeatures& val,
                    const LabelledFeatures& test, const ProbeGridOptions& options,
                    Results& results);

// Retrieval rows: columns (`dataset`, "I→R R@K") and ("R→I R@K"), chance
// in the details and in the entry name's footnote.
void add_retrieval_results(const std::string& method, const std::string& dataset,
                           const RetrievalReport& report, Results& results);

// Zero-shot rows: column (`dataset`, "zero-shot") with macro AUROC
// (multi-label) or accuracy (multi-class); chance and per-class figures in
// the details.
void add_zero_shot_results(const std::string& method, const std::string& dataset,
                           const ZeroShotReport& report, Results& results);

}  // namespace mgca::eval
