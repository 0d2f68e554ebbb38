#include "mgca/train/export.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "mgca/io/safetensors.h"
#include "mgca/train/checkpoint.h"
#include "mgca/train/config.h"
#include "mgca/util/error.h"
#include "mgca/util/files.h"

namespace fs = std::filesystem;

namespace mgca::train {

fs::path resolve_checkpoint(const fs::path& path) {
  MGCA_CHECK(fs::exists(path), "checkpoint '{}' does not exist", path.string());
  if (is_complete_checkpoint(path)) return path;
  MGCA_CHECK(fs::is_directory(path), "'{}' is not a checkpoint folder", path.string());
  for (const fs::path& dir : {path, path / "checkpoints"}) {
    if (auto newest = newest_checkpoint(dir)) return newest->path;
  }
  MGCA_FAIL("'{}' holds no complete checkpoint (a step-N folder with a DONE marker)", path.string());
}

void write_image_encoder(const fs::path& out, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                         const Config& config, const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> metadata = {
      {"format", kImageEncoderFormat},
      {"image_encoder", util::enum_name(config.model.image_encoder)},
      {"image_size", std::to_string(config.model.image_size)},
      {"resnet_input_size", std::to_string(config.model.resnet_input_size)},
      {"config", to_toml(config)},
  };
  metadata.insert(extra.begin(), extra.end());
  std::vector<std::pair<std::string, torch::Tensor>> on_cpu;
  for (const auto& [name, tensor] : tensors) on_cpu.emplace_back(name, tensor.detach().to(torch::kCPU));
  if (!out.parent_path().empty()) fs::create_directories(out.parent_path());
  io::save_safetensors(out, on_cpu, metadata);
}

int64_t export_image_encoder(const fs::path& given, const fs::path& out) {
  const fs::path checkpoint = resolve_checkpoint(given);
  const fs::path config_file = checkpoint / "config.toml";
  MGCA_CHECK(fs::is_regular_file(config_file), "checkpoint '{}' has no config.toml", checkpoint.string());
  const Config config = parse_config(util::read_file(config_file), config_file.string());
  const std::string prefix = "image.";
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& [name, tensor] : load_model_tensors(checkpoint)) {
    if (name.rfind(prefix, 0) == 0) tensors.emplace_back(name.substr(prefix.size()), tensor);
  }
  MGCA_CHECK(!tensors.empty(), "checkpoint '{}' has no image encoder tensors ('{}*')", checkpoint.string(), prefix);
  std::map<std::string, std::string> extra = {{"source_checkpoint", fs::absolute(checkpoint).string()}};
  const auto model_metadata = load_model_metadata(checkpoint);
  if (auto step = model_metadata.find("step"); step != model_metadata.end()) extra["step"] = step->second;
  write_image_encoder(out, tensors, config, extra);
  return static_cast<int64_t>(tensors.size());
}

}  // namespace mgca::train
