// Cross-modal retrieval and zero-shot classification on embeddings.
//
// Inputs are the global embeddings after the projection heads (the space the
// contrastive loss aligns), any scale: they are L2-normalized here and
// compared by cosine similarity. Single process: call on rank 0 with the
// gathered embeddings. Similarities are computed in blocks of
// `block_rows` queries so memory stays O(block · n).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mgca/eval/labels.h"
#include "mgca/eval/metrics.h"

namespace mgca::eval {

struct RetrievalReport {
  RecallReport image_to_text;  // queries: images; candidates: reports
  RecallReport text_to_image;  // queries: reports; candidates: images
};

// Row i of `image` [n, d] and of `text` [n, d] is a held-out pair. `groups`
// [n] (may be empty) marks pairs whose report text is identical: such
// reports (and their images) are interchangeable matches. Errors: shapes
// differ, n = 0, non-finite embeddings.
RetrievalReport evaluate_retrieval(const torch::Tensor& image, const torch::Tensor& text,
                                   const std::vector<int64_t>& groups,
                                   const std::vector<int64_t>& ks = {1, 5, 10},
                                   int64_t block_rows = 1024);

// Group ids for `groups` above: equal strings get equal ids (first-seen order).
std::vector<int64_t> group_identical(const std::vector<std::string>& texts);

// A class embedding from its prompt embeddings [P, d]: the normalized mean of
// the normalized prompts (CLIP's prompt ensembling).
torch::Tensor class_embedding(const torch::Tensor& prompt_embeddings);

// Cosine similarity of each image [n, d] with each class embedding [C, d]: [n, C].
Matrix zero_shot_scores(const torch::Tensor& image, const torch::Tensor& classes);

// Zero-shot figures from the scores: multi-label targets → per-label and
// macro AUROC of each class's cosine; multi-class → accuracy of the argmax
// (and macro one-vs-rest AUROC over classes with both outcomes).
struct ZeroShotReport {
  TaskKind kind = TaskKind::MultiLabel;
  AurocReport auroc;      // multi-label, or one-vs-rest for multi-class
  double accuracy = 0.0;  // multi-class only
  double chance = 0.0;    // multi-class: 1/C (uniform guess); multi-label: 0.5 (AUROC)
  double majority = 0.0;  // multi-class: accuracy of always answering the commonest class
};
ZeroShotReport evaluate_zero_shot(const Matrix& scores, const Targets& targets);

}  // namespace mgca::eval
