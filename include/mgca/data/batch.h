// One rank's batch as the loader yields it.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mgca::data {

// b = this rank's batch size (the global batch B divided by the world size).
// Rank r's batch is rows [r*b, (r+1)*b) of the global batch of (epoch,
// step); concatenating the ranks' batches in rank order gives the one-rank
// batch of size B, byte for byte.
struct Batch {
  torch::Tensor images;          // float32 [b, 1, H, W], normalised (one gray channel)
  torch::Tensor input_ids;       // int64 [b, max_length]: [CLS] … [SEP] [PAD]…; undefined without a tokenizer
  torch::Tensor attention_mask;  // int64 [b, max_length]: 1 for real tokens
  torch::Tensor labels;          // float32 [b, L]: 1, 0, -1 uncertain, NaN missing; undefined without labels
  torch::Tensor indices;         // int64 [b]: global dataset indices
  std::vector<std::string> ids;    // sample ids, [b]
  std::vector<std::string> texts;  // the text that was tokenised (full report or the sampled sentence)
  int64_t epoch = 0;
  int64_t step = 0;  // step within the epoch

  int64_t size() const { return indices.defined() ? indices.size(0) : 0; }
  // The tensors on `device`; non_blocking copies when the host memory is pinned.
  Batch to(const torch::Device& device, bool non_blocking = true) const;
};

}  // namespace mgca::data
