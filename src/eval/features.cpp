#include <fmt/ranges.h>
#include "mgca/eval/features.h"

#include <torch/torch.h>

#include <algorithm>
#include <exception>

#include "mgca/comm/agreement.h"
#include "mgca/io/safetensors.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"
#include "mgca/util/progress.h"

namespace mgca::eval {

namespace {

constexpr const char* kCacheKind = "mgca-feature-cache";

}  // namespace

std::vector<torch::Tensor> distributed_extract(comm::Communicator& comm, int64_t n,
                                               const std::vector<int64_t>& dims,
                                               const BatchEncoder& encode,
                                               const ExtractOptions& options) {
  const int world = comm.size(), rank = comm.rank();
  const int64_t batch = options.batch_size;
  MGCA_CHECK(n >= 0 && batch > 0 && !dims.empty(),
             "feature extraction: need n ≥ 0, a positive batch size and at least one output");
  for (int64_t d : dims) MGCA_CHECK(d > 0, "feature extraction: output dims must be positive");
  int64_t dims_hash = 0;
  for (int64_t d : dims) dims_hash = dims_hash * 1000003 + d;
  comm::check_ranks_agree(comm, "feature extraction: sample count, batch size, output count, output dims (hashed)",
                          {n, batch, static_cast<int64_t>(dims.size()), dims_hash});

  int64_t total_dim = 0;
  std::vector<int64_t> offsets;
  for (int64_t d : dims) {
    offsets.push_back(total_dim);
    total_dim += d;
  }
  const auto [begin, end] = comm::block_of(n, rank, world);
  const int64_t max_shard = (n + world - 1) / world;
  const int64_t rounds = (max_shard + batch - 1) / batch;

  torch::Tensor result;  // [n, total_dim] on rank 0
  if (rank == 0) result = torch::zeros({n, total_dim}, torch::kFloat32);
  util::Progress progress(options.label, rounds);
  for (int64_t round = 0; round < rounds; ++round) {
    const int64_t start = begin + round * batch;
    const int64_t count = std::clamp<int64_t>(end - start, 0, batch);
    auto block = torch::zeros({batch, total_dim}, torch::kFloat32);
    std::exception_ptr failure;
    if (count > 0) {
      try {
        const auto outputs = encode(start, count);
        MGCA_CHECK(outputs.size() == dims.size(),
                   "feature extraction: the encoder returned {} outputs for samples [{}, {}); "
                   "expected {}",
                   outputs.size(), start, start + count, dims.size());
        for (size_t k = 0; k < dims.size(); ++k) {
          const auto& out = outputs[k];
          MGCA_CHECK(out.defined() && out.dim() == 2 && out.size(0) == count &&
                         out.size(1) == dims[k],
                     "feature extraction: output {} for samples [{}, {}) has shape [{}]; "
                     "expected [{}, {}]",
                     k, start, start + count,
                     out.defined() ? fmt::format("{}", fmt::join(out.sizes(), ", ")) : "undefined",
                     count, dims[k]);
          block.narrow(0, 0, count)
              .narrow(1, offsets[k], dims[k])
              .copy_(out.detach().to(torch::kCPU, torch::kFloat32));
        }
      } catch (...) {
        failure = std::current_exception();
      }
    }
    // A failing rank must not leave the others waiting in the gather.
    if (comm.any(failure != nullptr)) {
      if (failure) std::rethrow_exception(failure);
      MGCA_FAIL("feature extraction stopped: another rank failed in round {} (its error is in "
                "its log)",
                round);
    }
    const auto gathered = comm.all_gather(block);  // [world * batch, total_dim]
    if (rank == 0) {
      for (int q = 0; q < world; ++q) {
        const auto [qb, qe] = comm::block_of(n, q, world);
        const int64_t qstart = qb + round * batch;
        const int64_t qcount = std::clamp<int64_t>(qe - qstart, 0, batch);
        if (qcount > 0) {
          result.narrow(0, qstart, qcount).copy_(gathered.narrow(0, q * batch, qcount));
        }
      }
    }
    progress.update(round + 1);
  }
  progress.finish();

  std::vector<torch::Tensor> outputs(dims.size());
  if (rank == 0) {
    for (size_t k = 0; k < dims.size(); ++k) {
      outputs[k] = result.narrow(1, offsets[k], dims[k]).contiguous();
    }
  }
  return outputs;
}

std::optional<std::map<std::string, torch::Tensor>> read_feature_cache(
    const std::filesystem::path& path, const CacheKey& key, std::string* why) {
  auto reason = [&](const std::string& text) {
    if (why) *why = text;
    return std::nullopt;
  };
  if (!std::filesystem::exists(path)) return reason("absent");
  try {
    io::SafetensorsFile file(path);
    const auto& meta = file.metadata();
    const auto kind = meta.find("mgca.kind");
    if (kind == meta.end() || kind->second != kCacheKind) {
      return reason("not a feature cache (metadata mgca.kind is not '" + std::string(kCacheKind) + "')");
    }
    for (const auto& [field, value] : key) {
      const auto found = meta.find("key." + field);
      if (found == meta.end()) return reason("key '" + field + "' absent from the cache");
      if (found->second != value) {
        return reason("key '" + field + "' differs: cache '" + found->second + "', now '" + value + "'");
      }
    }
    for (const auto& [name, value] : meta) {
      if (name.rfind("key.", 0) == 0 && !key.count(name.substr(4))) {
        return reason("the cache has the extra key '" + name.substr(4) + "'");
      }
    }
    std::map<std::string, torch::Tensor> tensors;
    for (const auto& name : file.names()) tensors[name] = file.tensor(name);
    if (why) why->clear();
    return tensors;
  } catch (const Error& error) {
    return reason(std::string("unreadable: ") + error.message());
  }
}

void write_feature_cache(const std::filesystem::path& path,
                         const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                         const CacheKey& key, const std::map<std::string, std::string>& info) {
  std::map<std::string, std::string> meta;
  meta["mgca.kind"] = kCacheKind;
  for (const auto& [field, value] : key) meta["key." + field] = value;
  for (const auto& [field, value] : info) meta["info." + field] = value;
  if (path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    MGCA_CHECK(!ec, "cannot create the folder of feature cache {}: {}", path.string(), ec.message());
  }
  std::vector<std::pair<std::string, torch::Tensor>> stored;
  for (const auto& [name, tensor] : tensors) {
    stored.emplace_back(name, tensor.detach().to(torch::kCPU, torch::kFloat32).contiguous());
  }
  io::save_safetensors(path, stored, meta);
}

std::map<std::string, std::string> feature_cache_info(const std::filesystem::path& path) {
  io::SafetensorsFile file(path);
  std::map<std::string, std::string> info;
  for (const auto& [name, value] : file.metadata()) {
    if (name.rfind("info.", 0) == 0) info[name.substr(5)] = value;
  }
  return info;
}

}  // namespace mgca::eval
