// Features and embeddings of a dataset split for a model, extracted under
// mpirun (features.h) and cached (one file per model × split × kind).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/eval/data_input.h"
#include "mgca/eval/encoder.h"
#include "mgca/eval/features.h"

namespace mgca::eval {

struct ExtractionOptions {
  int64_t batch_size = 64;
  std::filesystem::path cache_dir;  // empty: no cache
};

// The cache file and key of (model, split, kind).
std::filesystem::path cache_path(const ExtractionOptions& options, const EvalModel& model,
                                 const EvalSplit& split, const std::string& kind);
CacheKey cache_key(const EvalModel& model, const EvalSplit& split, const std::string& kind);

// Collective over `comm` (every rank passes the same model, split and
// options). Rank 0 returns image features [n, feature_dim] float32 on CPU in
// dataset order; other ranks an undefined tensor. Reuses a matching cache
// (rank 0 decides and tells the others), else extracts and writes it.
torch::Tensor split_image_features(comm::Communicator& comm, EvalModel& model,
                                   const EvalSplit& split, const ExtractionOptions& options);

// Collective, as above: {image embeddings, report embeddings}, each
// [n, embed_dim] L2-normalized, on rank 0. Needs a whole model.
std::pair<torch::Tensor, torch::Tensor> split_embeddings(comm::Communicator& comm, EvalModel& model,
                                                         const EvalSplit& split,
                                                         const ExtractionOptions& options);

// Local: report embeddings [n, embed_dim] of arbitrary texts (prompts).
torch::Tensor text_embeddings(EvalModel& model, const std::vector<std::string>& texts,
                              int64_t batch_size = 64);

}  // namespace mgca::eval
