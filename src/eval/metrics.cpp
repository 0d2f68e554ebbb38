#include "mgca/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mgca/util/error.h"

namespace mgca::eval {

std::vector<double> Matrix::column(int64_t c) const {
  MGCA_CHECK(c >= 0 && c < cols, "column {} out of range for a {}x{} matrix", c, rows, cols);
  std::vector<double> out(rows);
  for (int64_t r = 0; r < rows; ++r) out[r] = at(r, c);
  return out;
}

double auroc(const std::vector<double>& scores, const std::vector<double>& labels,
             const std::string& label) {
  MGCA_CHECK(scores.size() == labels.size(), "AUROC of '{}': {} scores but {} labels", label,
             scores.size(), labels.size());
  // (score, is_positive) of the labelled samples.
  std::vector<std::pair<double, bool>> kept;
  kept.reserve(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    const double y = labels[i];
    if (std::isnan(y)) continue;
    MGCA_CHECK(y == 0.0 || y == 1.0,
               "AUROC of '{}': sample {} has label {}; expected 0, 1 or NaN (missing) — "
               "apply a label policy to uncertain (-1) labels first",
               label, i, y);
    MGCA_CHECK(!std::isnan(scores[i]), "AUROC of '{}': sample {} has a NaN score", label, i);
    kept.emplace_back(scores[i], y == 1.0);
  }
  int64_t positives = 0;
  for (const auto& entry : kept) positives += entry.second ? 1 : 0;
  const int64_t negatives = static_cast<int64_t>(kept.size()) - positives;
  MGCA_CHECK(positives > 0 && negatives > 0,
             "AUROC of '{}' is undefined: {} positive and {} negative samples (after skipping {} "
             "missing); both classes are needed",
             label, positives, negatives, scores.size() - kept.size());
  std::sort(kept.begin(), kept.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  // Sum of mid-ranks (1-based) of the positives: a run of tied scores
  // occupying ranks [i+1, j] gets the rank (i+1+j)/2 each.
  double rank_sum = 0.0;
  size_t i = 0;
  while (i < kept.size()) {
    size_t j = i;
    int64_t run_positives = 0;
    while (j < kept.size() && kept[j].first == kept[i].first) {
      run_positives += kept[j].second ? 1 : 0;
      ++j;
    }
    const double mid_rank = 0.5 * (static_cast<double>(i + 1) + static_cast<double>(j));
    rank_sum += mid_rank * static_cast<double>(run_positives);
    i = j;
  }
  const double np = static_cast<double>(positives);
  const double nn = static_cast<double>(negatives);
  return (rank_sum - np * (np + 1.0) / 2.0) / (np * nn);
}

AurocReport auroc_multilabel(const Matrix& scores, const Matrix& labels,
                             const std::vector<std::string>& names) {
  MGCA_CHECK(scores.rows == labels.rows && scores.cols == labels.cols,
             "AUROC: scores are {}x{} but labels are {}x{}", scores.rows, scores.cols, labels.rows,
             labels.cols);
  MGCA_CHECK(static_cast<int64_t>(names.size()) == labels.cols,
             "AUROC: {} label names for {} label columns", names.size(), labels.cols);
  MGCA_CHECK(labels.cols > 0, "AUROC: no labels");
  AurocReport report;
  report.labels = names;
  double sum = 0.0;
  for (int64_t c = 0; c < labels.cols; ++c) {
    const auto y = labels.column(c);
    const double value = auroc(scores.column(c), y, names[c]);
    int64_t pos = 0, neg = 0;
    for (double v : y) {
      pos += v == 1.0;
      neg += v == 0.0;
    }
    report.per_label.push_back(value);
    report.positives.push_back(pos);
    report.negatives.push_back(neg);
    sum += value;
  }
  report.macro = sum / static_cast<double>(labels.cols);
  return report;
}

double accuracy(const std::vector<int64_t>& predicted, const std::vector<int64_t>& truth) {
  MGCA_CHECK(predicted.size() == truth.size(), "accuracy: {} predictions but {} labels",
             predicted.size(), truth.size());
  int64_t labelled = 0, correct = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    if (truth[i] < 0) continue;
    ++labelled;
    correct += predicted[i] == truth[i];
  }
  MGCA_CHECK(labelled > 0, "accuracy: none of the {} samples has a label", truth.size());
  return static_cast<double>(correct) / static_cast<double>(labelled);
}

std::vector<int64_t> argmax_rows(const Matrix& scores) {
  MGCA_CHECK(scores.cols > 0, "argmax of a matrix with no columns");
  std::vector<int64_t> out(scores.rows);
  for (int64_t r = 0; r < scores.rows; ++r) {
    int64_t best = 0;
    for (int64_t c = 1; c < scores.cols; ++c) {
      if (scores.at(r, c) > scores.at(r, best)) best = c;
    }
    out[r] = best;
  }
  return out;
}

double recall_chance(int64_t total, int64_t good, int64_t k) {
  MGCA_CHECK(total > 0 && good > 0 && good <= total && k > 0,
             "recall chance needs 0 < good ≤ total and k > 0 (total {}, good {}, k {})", total, good,
             k);
  if (k >= total) return 1.0;
  // P(no correct candidate among the first K) = Π_{j<K} (total − good − j)/(total − j).
  double miss = 1.0;
  for (int64_t j = 0; j < k; ++j) {
    const double remaining_bad = static_cast<double>(total - good - j);
    if (remaining_bad <= 0.0) return 1.0;
    miss *= remaining_bad / static_cast<double>(total - j);
  }
  return 1.0 - miss;
}

void append_retrieval_ranks(const Matrix& similarity, const int64_t* target,
                            const std::vector<int64_t>& groups, RetrievalRanks& out) {
  const int64_t nq = similarity.rows, nc = similarity.cols;
  MGCA_CHECK(nc > 0, "retrieval: no candidates");
  MGCA_CHECK(groups.empty() || static_cast<int64_t>(groups.size()) == nc,
             "retrieval: {} groups for {} candidates", groups.size(), nc);
  const int64_t offset = static_cast<int64_t>(out.rank.size());
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t t = target[i];
    MGCA_CHECK(t >= 0 && t < nc, "retrieval: query {} has target {} outside [0, {})", offset + i,
               t, nc);
    const double* row = &similarity.values[i * nc];
    double best = -INFINITY;
    int64_t good = 0;
    for (int64_t j = 0; j < nc; ++j) {
      MGCA_CHECK(!std::isnan(row[j]), "retrieval: NaN similarity for query {}, candidate {}",
                 offset + i, j);
      if (groups.empty() ? j == t : groups[j] == groups[t]) {
        best = std::max(best, row[j]);
        ++good;
      }
    }
    // Ties with the best correct score count against the query.
    int64_t rank = 0;
    for (int64_t j = 0; j < nc; ++j) {
      const bool correct = groups.empty() ? j == t : groups[j] == groups[t];
      rank += !correct && row[j] >= best;
    }
    out.rank.push_back(rank);
    out.good.push_back(good);
  }
}

RecallReport summarize_recall(const RetrievalRanks& ranks, int64_t candidates,
                              const std::vector<int64_t>& ks) {
  const int64_t nq = static_cast<int64_t>(ranks.rank.size());
  MGCA_CHECK(nq > 0 && ranks.good.size() == ranks.rank.size(), "retrieval: no queries");
  MGCA_CHECK(!ks.empty(), "retrieval: no K given");
  for (int64_t k : ks) MGCA_CHECK(k > 0, "retrieval: K must be positive, got {}", k);
  RecallReport report;
  report.ks = ks;
  report.queries = nq;
  report.candidates = candidates;
  report.recall.assign(ks.size(), 0.0);
  report.chance.assign(ks.size(), 0.0);
  for (int64_t i = 0; i < nq; ++i) {
    for (size_t k = 0; k < ks.size(); ++k) {
      report.recall[k] += ranks.rank[i] < ks[k];
      report.chance[k] += recall_chance(candidates, ranks.good[i], ks[k]);
    }
  }
  for (size_t k = 0; k < ks.size(); ++k) {
    report.recall[k] /= static_cast<double>(nq);
    report.chance[k] /= static_cast<double>(nq);
  }
  std::vector<int64_t> sorted = ranks.rank;
  std::sort(sorted.begin(), sorted.end());
  const size_t mid = sorted.size() / 2;
  report.median_rank = sorted.size() % 2 == 1
                           ? static_cast<double>(sorted[mid]) + 1.0
                           : 0.5 * static_cast<double>(sorted[mid - 1] + sorted[mid]) + 1.0;
  report.mean_rank =
      static_cast<double>(std::accumulate(sorted.begin(), sorted.end(), int64_t{0})) / nq + 1.0;
  return report;
}

RecallReport recall_at_k(const Matrix& similarity, const std::vector<int64_t>& target,
                         const std::vector<int64_t>& groups, const std::vector<int64_t>& ks) {
  MGCA_CHECK(similarity.rows > 0 && similarity.cols > 0,
             "retrieval: empty similarity matrix ({}x{})", similarity.rows, similarity.cols);
  MGCA_CHECK(static_cast<int64_t>(target.size()) == similarity.rows,
             "retrieval: {} targets for {} queries", target.size(), similarity.rows);
  RetrievalRanks ranks;
  append_retrieval_ranks(similarity, target.data(), groups, ranks);
  return summarize_recall(ranks, similarity.cols, ks);
}

MeanStd mean_std(const std::vector<double>& values) {
  MeanStd out;
  out.count = static_cast<int64_t>(values.size());
  if (values.empty()) return out;
  double sum = 0.0;
  for (double v : values) sum += v;
  out.mean = sum / static_cast<double>(values.size());
  if (values.size() > 1) {
    double ss = 0.0;
    for (double v : values) ss += (v - out.mean) * (v - out.mean);
    out.std = std::sqrt(ss / static_cast<double>(values.size() - 1));
  }
  return out;
}

}  // namespace mgca::eval
