// Distributed feature extraction and the feature cache.
//
// Extraction: rank r of W encodes the contiguous shard [r·n/W, (r+1)·n/W)
// of the n samples (sizes differ by at most one; ranks may hold none), in
// batches. The Communicator's all_gather needs equal shapes, so the ranks
// proceed in rounds: in each round every rank encodes (up to) one batch of
// its shard, pads it with zero rows to the batch size, and all ranks gather
// [W·batch, D]; rank 0 copies each rank's real rows to their dataset
// positions. The number of rounds, ceil(max shard / batch), is the same on
// every rank, so no rank waits on a collective the others skip. Only rank 0
// holds the [n, D] result; other ranks need memory for one round only.
//
// Cache: a safetensors file holding the extracted tensors and, as metadata,
// the key that produced them (encoder file and SHA-256, dataset folder and
// the digest of its manifest, split, image size, what was extracted, format
// version). A cache is reused only when every key field matches; otherwise
// it is recomputed and replaced (the log says which field differed).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"

namespace mgca::eval {

// Encodes samples [begin, begin + count) of this rank's shard (count ≥ 1)
// and returns one tensor per output, each [count, dims[k]] (any device, any
// float dtype; stored as float32).
using BatchEncoder = std::function<std::vector<torch::Tensor>(int64_t begin, int64_t count)>;

struct ExtractOptions {
  int64_t batch_size = 64;
  std::string label = "features";  // progress line label
};

// Collective: every rank passes the same n, dims and options. Returns the
// outputs [n, dims[k]] float32 on CPU in sample order on rank 0, and
// undefined tensors on the other ranks. An encoder returning a wrong shape
// is an error naming the rank, the output and the sample range.
std::vector<torch::Tensor> distributed_extract(comm::Communicator& comm, int64_t n,
                                               const std::vector<int64_t>& dims,
                                               const BatchEncoder& encode,
                                               const ExtractOptions& options = {});

// Key fields of a cache (stored as safetensors metadata under "key.<name>").
using CacheKey = std::map<std::string, std::string>;

// The cached tensors if `path` exists and its key equals `key`; nullopt (and
// `why` set to the first differing field, or "absent") otherwise. A file
// that is not a readable safetensors cache is treated as stale, with the
// reason in `why`.
std::optional<std::map<std::string, torch::Tensor>> read_feature_cache(
    const std::filesystem::path& path, const CacheKey& key, std::string* why = nullptr);

// Writes tensors (CPU float32) and the key atomically. Extra metadata
// (`info`, e.g. label names as JSON) is stored under "info.<name>".
void write_feature_cache(const std::filesystem::path& path,
                         const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                         const CacheKey& key, const std::map<std::string, std::string>& info = {});

// The "info.<name>" metadata of a cache file.
std::map<std::string, std::string> feature_cache_info(const std::filesystem::path& path);

}  // namespace mgca::eval
