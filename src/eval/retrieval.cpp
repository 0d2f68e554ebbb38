#include <fmt/ranges.h>
#include "mgca/eval/retrieval.h"

#include <torch/torch.h>

#include <map>

#include "mgca/eval/probe.h"
#include "mgca/util/error.h"

namespace mgca::eval {

namespace {

torch::Tensor normalized(const torch::Tensor& x, const char* what) {
  MGCA_CHECK(x.dim() == 2, "{} embeddings must be [n, d], got {} dims", what, x.dim());
  auto f = x.detach().to(torch::kCPU, torch::kFloat32);
  if (!torch::isfinite(f).all().item<bool>()) {
    const int64_t bad = (~torch::isfinite(f).all(1)).nonzero()[0][0].item<int64_t>();
    MGCA_FAIL("{} embedding of row {} is not finite", what, bad);
  }
  return torch::nn::functional::normalize(f, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

RecallReport rank_direction(const torch::Tensor& queries, const torch::Tensor& candidates,
                            const std::vector<int64_t>& groups, const std::vector<int64_t>& ks,
                            int64_t block_rows) {
  const int64_t n = queries.size(0);
  std::vector<int64_t> target(n);
  for (int64_t i = 0; i < n; ++i) target[i] = i;
  RetrievalRanks ranks;
  for (int64_t start = 0; start < n; start += block_rows) {
    const int64_t rows = std::min(block_rows, n - start);
    auto sim = torch::mm(queries.narrow(0, start, rows), candidates.t());
    append_retrieval_ranks(to_matrix(sim), target.data() + start, groups, ranks);
  }
  return summarize_recall(ranks, candidates.size(0), ks);
}

}  // namespace

RetrievalReport evaluate_retrieval(const torch::Tensor& image, const torch::Tensor& text,
                                   const std::vector<int64_t>& groups,
                                   const std::vector<int64_t>& ks, int64_t block_rows) {
  MGCA_CHECK(image.dim() == 2 && text.dim() == 2 && image.sizes() == text.sizes(),
             "retrieval: image embeddings {} and report embeddings {} must both be [n, d]",
             fmt::format("{}", fmt::join(image.sizes(), "x")),
             fmt::format("{}", fmt::join(text.sizes(), "x")));
  MGCA_CHECK(image.size(0) > 0, "retrieval: no pairs");
  MGCA_CHECK(groups.empty() || static_cast<int64_t>(groups.size()) == image.size(0),
             "retrieval: {} groups for {} pairs", groups.size(), image.size(0));
  MGCA_CHECK(block_rows > 0, "retrieval: block_rows must be positive");
  const auto v = normalized(image, "image");
  const auto t = normalized(text, "report");
  RetrievalReport report;
  report.image_to_text = rank_direction(v, t, groups, ks, block_rows);
  report.text_to_image = rank_direction(t, v, groups, ks, block_rows);
  return report;
}

std::vector<int64_t> group_identical(const std::vector<std::string>& texts) {
  std::map<std::string, int64_t> ids;
  std::vector<int64_t> out;
  out.reserve(texts.size());
  for (const auto& text : texts) {
    out.push_back(ids.emplace(text, static_cast<int64_t>(ids.size())).first->second);
  }
  return out;
}

torch::Tensor class_embedding(const torch::Tensor& prompt_embeddings) {
  MGCA_CHECK(prompt_embeddings.dim() == 2 && prompt_embeddings.size(0) > 0,
             "class embedding: prompt embeddings must be [P > 0, d]");
  auto mean = normalized(prompt_embeddings, "prompt").mean(0, /*keepdim=*/true);
  return torch::nn::functional::normalize(mean, torch::nn::functional::NormalizeFuncOptions().dim(1))
      .squeeze(0);
}

Matrix zero_shot_scores(const torch::Tensor& image, const torch::Tensor& classes) {
  MGCA_CHECK(image.dim() == 2 && classes.dim() == 2 && image.size(1) == classes.size(1),
             "zero-shot: image embeddings [n, d] and class embeddings [C, d] must share d "
             "(got {} and {})",
             fmt::format("{}", fmt::join(image.sizes(), "x")),
             fmt::format("{}", fmt::join(classes.sizes(), "x")));
  return to_matrix(torch::mm(normalized(image, "image"), normalized(classes, "class").t()));
}

ZeroShotReport evaluate_zero_shot(const Matrix& scores, const Targets& targets) {
  MGCA_CHECK(scores.rows == targets.size(), "zero-shot: {} score rows for {} samples", scores.rows,
             targets.size());
  MGCA_CHECK(scores.cols == static_cast<int64_t>(targets.names.size()),
             "zero-shot: {} class scores for {} classes", scores.cols, targets.names.size());
  ZeroShotReport report;
  report.kind = targets.kind;
  if (targets.kind == TaskKind::MultiLabel) {
    report.auroc = auroc_multilabel(scores, targets.multilabel, targets.names);
    report.chance = 0.5;
    return report;
  }
  report.accuracy = accuracy(argmax_rows(scores), targets.classes);
  const int64_t classes = scores.cols;
  report.chance = 1.0 / static_cast<double>(classes);
  std::vector<int64_t> counts(classes, 0);
  int64_t labelled = 0;
  for (int64_t c : targets.classes) {
    if (c >= 0) {
      ++counts[c];
      ++labelled;
    }
  }
  report.majority = static_cast<double>(*std::max_element(counts.begin(), counts.end())) /
                    static_cast<double>(labelled);
  // One-vs-rest AUROC over the classes that have both outcomes.
  double sum = 0.0;
  for (int64_t c = 0; c < classes; ++c) {
    if (counts[c] == 0 || counts[c] == labelled) continue;
    std::vector<double> y(targets.classes.size());
    for (size_t i = 0; i < y.size(); ++i) {
      y[i] = targets.classes[i] < 0 ? NAN : (targets.classes[i] == c ? 1.0 : 0.0);
    }
    const double value = auroc(scores.column(c), y, targets.names[c]);
    report.auroc.labels.push_back(targets.names[c]);
    report.auroc.per_label.push_back(value);
    report.auroc.positives.push_back(counts[c]);
    report.auroc.negatives.push_back(labelled - counts[c]);
    sum += value;
  }
  if (!report.auroc.per_label.empty()) {
    report.auroc.macro = sum / static_cast<double>(report.auroc.per_label.size());
  }
  return report;
}

}  // namespace mgca::eval
