// Evaluation metrics on host vectors (no torch): AUROC, accuracy, recall@K.
//
// Everything here is a pure function of its arguments, computed in double on
// one process; callers gather predictions on rank 0 first. Errors name the
// label (or query) at fault.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mgca::eval {

// A dense row-major matrix of doubles: rows × cols.
struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<double> values;  // size rows * cols

  Matrix() = default;
  Matrix(int64_t r, int64_t c, double fill = 0.0) : rows(r), cols(c), values(r * c, fill) {}
  double& at(int64_t r, int64_t c) { return values[r * cols + c]; }
  double at(int64_t r, int64_t c) const { return values[r * cols + c]; }
  std::vector<double> column(int64_t c) const;
};

// Area under the ROC curve of `scores` for binary `labels` (1 positive,
// 0 negative, NaN missing: that sample is skipped). Computed as the
// Mann–Whitney statistic with ties counted one half:
//   AUC = P(score+ > score−) + ½ P(score+ = score−)
//       = (R+ − n+(n+ + 1)/2) / (n+ · n−),  R+ = sum of mid-ranks of the positives.
// Errors (naming `label`): sizes differ, a label other than 0/1/NaN, a NaN
// score on a labelled sample, or only one class present after skipping NaN
// ("AUROC is undefined").
double auroc(const std::vector<double>& scores, const std::vector<double>& labels,
             const std::string& label = "label");

struct AurocReport {
  std::vector<std::string> labels;
  std::vector<double> per_label;   // AUROC of each label
  std::vector<int64_t> positives;  // counted after skipping NaN
  std::vector<int64_t> negatives;
  double macro = 0.0;              // unweighted mean over labels
};

// Per-label and macro AUROC of scores [n, L] against labels [n, L] (0/1/NaN).
// `names` has L entries. Any label with one class only is an error naming it
// (a macro over the remaining labels would silently change the task).
AurocReport auroc_multilabel(const Matrix& scores, const Matrix& labels,
                             const std::vector<std::string>& names);

// Fraction of samples whose predicted class equals the true class; samples
// whose true class is negative (missing) are skipped. Errors: sizes differ,
// no labelled sample.
double accuracy(const std::vector<int64_t>& predicted, const std::vector<int64_t>& truth);

// Row-wise argmax of scores [n, C] (first maximum on ties).
std::vector<int64_t> argmax_rows(const Matrix& scores);

// Retrieval: queries i and candidates j scored by similarity [nq, nc];
// candidate `target[i]` is the correct match of query i, and any candidate
// with the same `group` as the target counts as correct too (e.g. pairs
// whose report text is identical). The rank of query i is the number of
// incorrect candidates scoring ≥ the best correct one (ties are counted
// against the query, so a constant similarity never scores above chance).
// Hit at K: rank < K.
struct RecallReport {
  std::vector<int64_t> ks;
  std::vector<double> recall;  // fraction of queries with a hit at each K
  std::vector<double> chance;  // expected recall of a uniformly random ranking
  double median_rank = 0.0;    // 1-based, as papers report it
  double mean_rank = 0.0;      // 1-based
  int64_t queries = 0;
  int64_t candidates = 0;
};

// `groups` may be empty (every candidate its own group). Chance for query i
// with g correct candidates among nc: 1 − C(nc−g, K)/C(nc, K), averaged.
RecallReport recall_at_k(const Matrix& similarity, const std::vector<int64_t>& target,
                         const std::vector<int64_t>& groups, const std::vector<int64_t>& ks);

// The same in pieces, for callers that score queries in blocks: ranks
// (0-based, as defined above) and correct-candidate counts per query.
struct RetrievalRanks {
  std::vector<int64_t> rank;
  std::vector<int64_t> good;
};
// Appends the ranks of similarity's rows, whose targets are target[0..rows).
void append_retrieval_ranks(const Matrix& similarity, const int64_t* target,
                            const std::vector<int64_t>& groups, RetrievalRanks& out);
RecallReport summarize_recall(const RetrievalRanks& ranks, int64_t candidates,
                              const std::vector<int64_t>& ks);

// Expected recall@K of a random ranking with `good` correct candidates among `total`.
double recall_chance(int64_t total, int64_t good, int64_t k);

// Mean and sample standard deviation (n − 1 in the denominator; 0 for one value).
struct MeanStd {
  double mean = 0.0;
  double std = 0.0;
  int64_t count = 0;
};
MeanStd mean_std(const std::vector<double>& values);

}  // namespace mgca::eval
