#include "mgca/eval/pipeline.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "mgca/io/dataset_file.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"

namespace fs = std::filesystem;

namespace mgca::eval {

namespace {

constexpr const char* kPreprocessVersion = "center-crop-0.5-norm-v1";
constexpr const char* kCacheFormat = "1";

torch::Tensor batch_images(const EvalSplit& split, int64_t begin, int64_t count, int64_t crop) {
  auto bytes = split.images(begin, count);
  const int64_t s = split.image_size();
  auto raw = torch::from_blob(bytes.data(), {count, s, s}, torch::kUInt8).clone();
  return preprocess_images(raw, crop);
}

std::map<std::string, std::string> cache_info(const EvalModel& model, const EvalSplit& split) {
  return {{"model", model.name()},
          {"model.weights", model.weights_path().string()},
          {"dataset", split.dir().string()},
          {"dataset.source", split.dataset().manifest().source},
          {"dataset.split", split.dataset().manifest().split},
          {"label_names", nlohmann::json(split.label_names()).dump()}};
}

// Rank 0 looks for a matching cache and tells every rank whether it found one.
std::optional<std::map<std::string, torch::Tensor>> shared_cache_lookup(
    comm::Communicator& comm, const ExtractionOptions& options, const EvalModel& model,
    const EvalSplit& split, const std::string& kind) {
  std::optional<std::map<std::string, torch::Tensor>> found;
  if (comm.rank() == 0 && !options.cache_dir.empty()) {
    std::string why;
    const auto path = cache_path(options, model, split, kind);
    found = read_feature_cache(path, cache_key(model, split, kind), &why);
    if (found) {
      log::info("{} of {} on {}: reusing the cache {}", kind, model.name(), split.dir().string(),
                path.string());
    } else if (why != "absent") {
      log::info("{} of {} on {}: recomputing the cache {} ({})", kind, model.name(),
                split.dir().string(), path.string(), why);
    }
  }
  const bool hit = comm.broadcast_string(found ? "1" : "0") == "1";
  if (hit && comm.rank() != 0) return std::map<std::string, torch::Tensor>{};
  return found;
}

}  // namespace

CacheKey cache_key(const EvalModel& model, const EvalSplit& split, const std::string& kind) {
  return {{"kind", kind},
          {"model", model.identity()},
          {"dataset.digest", split.digest()},
          {"crop", std::to_string(model.model_config().image_size)},
          {"preprocess", kPreprocessVersion},
          {"format", kCacheFormat}};
}

fs::path cache_path(const ExtractionOptions& options, const EvalModel& model, const EvalSplit& split,
                    const std::string& kind) {
  const std::string id = model.identity();
  const std::string model_hash = io::sha256_hex(id.data(), id.size()).substr(0, 12);
  std::string dataset = fs::absolute(split.dir()).lexically_normal().filename().string();
  if (dataset.empty()) dataset = "dataset";
  const std::string parent =
      fs::absolute(split.dir()).lexically_normal().parent_path().filename().string();
  return options.cache_dir /
         fmt::format("{}-{}-{}{}.safetensors", kind, model_hash, parent.empty() ? "" : parent + "-",
                     dataset);
}

torch::Tensor split_image_features(comm::Communicator& comm, EvalModel& model,
                                   const EvalSplit& split, const ExtractionOptions& options) {
  const std::string kind = "image-features";
  if (auto cached = shared_cache_lookup(comm, options, model, split, kind)) {
    if (comm.rank() != 0) return {};
    MGCA_CHECK(cached->count("features"), "feature cache without 'features'");
    return cached->at("features");
  }
  const int64_t crop = model.model_config().image_size;
  auto outputs = distributed_extract(
      comm, split.size(), {model.feature_dim()},
      [&](int64_t begin, int64_t count) {
        return std::vector<torch::Tensor>{model.image_features(batch_images(split, begin, count, crop))};
      },
      ExtractOptions{options.batch_size, "features " + split.role()});
  if (comm.rank() == 0 && !options.cache_dir.empty()) {
    write_feature_cache(cache_path(options, model, split, kind), {{"features", outputs[0]}},
                        cache_key(model, split, kind), cache_info(model, split));
  }
  return outputs[0];
}

std::pair<torch::Tensor, torch::Tensor> split_embeddings(comm::Communicator& comm, EvalModel& model,
                                                         const EvalSplit& split,
                                                         const ExtractionOptions& options) {
  MGCA_CHECK(model.has_text(), "{}: retrieval and zero-shot need a whole model (a checkpoint), "
             "not an image encoder alone", model.name());
  const std::string kind = "embeddings";
  if (auto cached = shared_cache_lookup(comm, options, model, split, kind)) {
    if (comm.rank() != 0) return {};
    MGCA_CHECK(cached->count("image") && cached->count("report"), "embedding cache incomplete");
    return {cached->at("image"), cached->at("report")};
  }
  const int64_t crop = model.model_config().image_size;
  const int64_t d = model.embed_dim();
  auto outputs = distributed_extract(
      comm, split.size(), {d, d},
      [&](int64_t begin, int64_t count) {
        const auto [ids, mask] = model.tokenize(split.reports(begin, count));
        return std::vector<torch::Tensor>{
            model.image_embeddings(batch_images(split, begin, count, crop)),
            model.report_embeddings(ids, mask)};
      },
      ExtractOptions{options.batch_size, "embeddings " + split.role()});
  if (comm.rank() == 0 && !options.cache_dir.empty()) {
    write_feature_cache(cache_path(options, model, split, kind),
                        {{"image", outputs[0]}, {"report", outputs[1]}},
                        cache_key(model, split, kind), cache_info(model, split));
  }
  return {outputs[0], outputs[1]};
}

torch::Tensor text_embeddings(EvalModel& model, const std::vector<std::string>& texts,
                              int64_t batch_size) {
  std::vector<torch::Tensor> parts;
  for (size_t begin = 0; begin < texts.size(); begin += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(texts.size(), begin + static_cast<size_t>(batch_size));
    const auto [ids, mask] = model.tokenize({texts.begin() + begin, texts.begin() + end});
    parts.push_back(model.report_embeddings(ids, mask).to(torch::kCPU));
  }
  MGCA_CHECK(!parts.empty(), "no texts to embed");
  return torch::cat(parts, 0);
}

}  // namespace mgca::eval
