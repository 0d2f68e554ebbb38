#include "mgca/model/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include <cmath>
#include <regex>
#include <set>

#include "mgca/io/safetensors.h"
#include "mgca/model/bert.h"
#include "mgca/model/heads.h"
#include "mgca/model/resnet.h"
#include "mgca/model/vit.h"
#include "format.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"

namespace mgca::model {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

std::string shape_string(const torch::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

// The checkpoint after translation to our names.
struct Translated {
  std::map<std::string, torch::Tensor> tensors;
  std::map<std::string, std::string> origin;  // our name → checkpoint name(s)
  std::vector<std::string> skipped, unexpected, mismatched, missing;
  void put(const std::string& ours, const std::string& theirs, const torch::Tensor& t) {
    tensors[ours] = t;
    origin[ours] = theirs;
  }
};

// ---- Hugging Face BERT -------------------------------------------------------
Translated translate_hf_bert(const std::map<std::string, torch::Tensor>& src, const BertConfig& config) {
  Translated out;
  static const std::regex layer_re(R"(encoder\.layer\.(\d+)\.(.+))");
  static const std::map<std::string, std::string> layer_names = {
      {"attention.output.dense", "attn.proj"},  {"attention.output.LayerNorm", "norm1"},
      {"intermediate.dense", "fc1"},            {"output.dense", "fc2"},
      {"output.LayerNorm", "norm2"}};
  auto param_suffix = [](std::string s) {  // LayerNorm gamma/beta → weight/bias
    if (s == "gamma") return std::string("weight");
    if (s == "beta") return std::string("bias");
    return s;
  };
  // qkv parts per (layer, weight|bias): index 0 query, 1 key, 2 value.
  std::map<std::pair<int64_t, std::string>, std::array<std::pair<std::string, torch::Tensor>, 3>> qkv;
  for (const auto& [full_name, tensor] : src) {
    std::string name = starts_with(full_name, "bert.") ? full_name.substr(5) : full_name;
    if (starts_with(name, "pooler.") || starts_with(full_name, "cls.") || name == "embeddings.position_ids") {
      out.skipped.push_back(full_name);
      continue;
    }
    if (starts_with(name, "embeddings.")) {
      const auto rest = name.substr(11);
      if (starts_with(rest, "LayerNorm.")) {
        out.put("embeddings.norm." + param_suffix(rest.substr(10)), full_name, tensor);
      } else {
        out.put(name, full_name, tensor);
      }
      continue;
    }
    std::smatch m;
    if (!std::regex_match(name, m, layer_re)) {
      out.unexpected.push_back(full_name);
      continue;
    }
    const int64_t layer = std::stoll(m[1]);
    const std::string rest = m[2];
    if (layer >= config.num_layers) {  // the model uses only the first num_layers layers
      out.skipped.push_back(full_name);
      continue;
    }
    const auto dot = rest.rfind('.');
    const std::string module = rest.substr(0, dot), param = param_suffix(rest.substr(dot + 1));
    static const std::map<std::string, int> part = {
        {"attention.self.query", 0}, {"attention.self.key", 1}, {"attention.self.value", 2}};
    if (auto p = part.find(module); p != part.end()) {
      qkv[{layer, param}][p->second] = {full_name, tensor};
    } else if (auto n = layer_names.find(module); n != layer_names.end()) {
      out.put(fmt::format("layers.{}.{}.{}", layer, n->second, param), full_name, tensor);
    } else {
      out.unexpected.push_back(full_name);
    }
  }
  static const char* part_names[3] = {"query", "key", "value"};
  for (auto& [key, parts] : qkv) {
    const auto& [layer, param] = key;
    const std::string ours = fmt::format("layers.{}.attn.qkv.{}", layer, param);
    std::vector<int64_t> expected = {config.hidden};
    if (param == "weight") expected.push_back(config.hidden);
    bool ok = true;
    std::vector<std::string> names;
    for (int i = 0; i < 3; ++i) {
      const std::string theirs =
          fmt::format("encoder.layer.{}.attention.self.{}.{}", layer, part_names[i], param);
      if (!parts[i].second.defined()) {
        out.missing.push_back(fmt::format("{} (checkpoint lacks {})", ours, theirs));
        ok = false;
      } else if (parts[i].second.sizes() != c10::IntArrayRef(expected)) {
        out.mismatched.push_back(fmt::format("{}: checkpoint {}, model [{}] (part of {})", parts[i].first,
                                             shape_string(parts[i].second), fmt::join(expected, ", "), ours));
        ok = false;
      } else {
        names.push_back(parts[i].first);
      }
    }
    if (ok) {  // else the generic check sees `ours` already reported
      out.put(ours, fmt::format("{}", fmt::join(names, " + ")),
              at::cat({parts[0].second, parts[1].second, parts[2].second}, 0));
    }
  }
  return out;
}

// ---- ViT ---------------------------------------------------------------------
Translated translate_timm_vit(const std::map<std::string, torch::Tensor>& src) {
  Translated out;
  for (const auto& [name, tensor] : src) {
    if (starts_with(name, "head.") || starts_with(name, "head_dist.")) {
      out.skipped.push_back(name);
    } else {
      out.put(name, name, tensor);
    }
  }
  return out;
}

Translated translate_torchvision_vit(const std::map<std::string, torch::Tensor>& src) {
  Translated out;
  static const std::regex layer_re(R"(encoder\.layers\.encoder_layer_(\d+)\.(.+))");
  static const std::map<std::string, std::string> top = {
      {"conv_proj.weight", "patch_embed.proj.weight"}, {"conv_proj.bias", "patch_embed.proj.bias"},
      {"class_token", "cls_token"},                    {"encoder.pos_embedding", "pos_embed"},
      {"encoder.ln.weight", "norm.weight"},            {"encoder.ln.bias", "norm.bias"}};
  static const std::map<std::string, std::string> in_layer = {
      {"ln_1.weight", "norm1.weight"},
      {"ln_1.bias", "norm1.bias"},
      {"self_attention.in_proj_weight", "attn.qkv.weight"},
      {"self_attention.in_proj_bias", "attn.qkv.bias"},
      {"self_attention.out_proj.weight", "attn.proj.weight"},
      {"self_attention.out_proj.bias", "attn.proj.bias"},
      {"ln_2.weight", "norm2.weight"},
      {"ln_2.bias", "norm2.bias"},
      {"mlp.linear_1.weight", "mlp.fc1.weight"},  // torchvision ≤ 0.12 names
      {"mlp.linear_1.bias", "mlp.fc1.bias"},
      {"mlp.linear_2.weight", "mlp.fc2.weight"},
      {"mlp.linear_2.bias", "mlp.fc2.bias"},
      {"mlp.0.weight", "mlp.fc1.weight"},  // torchvision ≥ 0.13 (MLP as Sequential)
      {"mlp.0.bias", "mlp.fc1.bias"},
      {"mlp.3.weight", "mlp.fc2.weight"},
      {"mlp.3.bias", "mlp.fc2.bias"}};
  for (const auto& [name, tensor] : src) {
    if (starts_with(name, "heads.")) {
      out.skipped.push_back(name);
      continue;
    }
    if (auto t = top.find(name); t != top.end()) {
      out.put(t->second, name, tensor);
      continue;
    }
    std::smatch m;
    if (std::regex_match(name, m, layer_re)) {
      if (auto l = in_layer.find(m[2]); l != in_layer.end()) {
        out.put(fmt::format("blocks.{}.{}", std::string(m[1]), l->second), name, tensor);
        continue;
      }
    }
    out.unexpected.push_back(name);
  }
  return out;
}

// ---- ResNet / ours ------------------------------------------------------------
Translated translate_identity(const std::map<std::string, torch::Tensor>& src,
                              const std::vector<std::string>& skip_prefixes) {
  Translated out;
  for (const auto& [name, tensor] : src) {
    bool skip = false;
    for (const auto& p : skip_prefixes) skip = skip || starts_with(name, p);
    if (skip) {
      out.skipped.push_back(name);
    } else {
      out.put(name, name, tensor);
    }
  }
  return out;
}

bool has_key(const std::map<std::string, torch::Tensor>& src, const std::string& key) { return src.count(key) > 0; }

bool has_prefix(const std::map<std::string, torch::Tensor>& src, const std::string& prefix) {
  auto it = src.lower_bound(prefix);
  return it != src.end() && starts_with(it->first, prefix);
}

WeightFormat detect(const torch::nn::Module& module, const std::map<std::string, torch::Tensor>& src) {
  if (dynamic_cast<const ViTImpl*>(&module)) {
    return (has_key(src, "conv_proj.weight") || has_key(src, "class_token")) ? WeightFormat::TorchvisionViT
                                                                              : WeightFormat::TimmViT;
  }
  if (dynamic_cast<const BertImpl*>(&module)) {
    return (has_prefix(src, "bert.") || has_prefix(src, "encoder.layer.") ||
            has_key(src, "embeddings.LayerNorm.weight") || has_key(src, "embeddings.LayerNorm.gamma"))
               ? WeightFormat::HuggingFaceBert
               : WeightFormat::Ours;
  }
  if (dynamic_cast<const ResNetImpl*>(&module)) return WeightFormat::TorchvisionResNet;
  return WeightFormat::Ours;
}

void check_format_fits(const torch::nn::Module& module, WeightFormat format, const std::string& source) {
  const bool vit = dynamic_cast<const ViTImpl*>(&module) != nullptr;
  const bool bert = dynamic_cast<const BertImpl*>(&module) != nullptr;
  const bool resnet = dynamic_cast<const ResNetImpl*>(&module) != nullptr;
  const bool fits = format == WeightFormat::Ours ||
                    (vit && (format == WeightFormat::TimmViT || format == WeightFormat::TorchvisionViT)) ||
                    (bert && format == WeightFormat::HuggingFaceBert) ||
                    (resnet && format == WeightFormat::TorchvisionResNet);
  MGCA_CHECK(fits, "{}: format {} cannot load into a {}", source, to_string(format), module.name());
}

std::string bullet_list(const std::string& title, const std::vector<std::string>& items) {
  if (items.empty()) return {};
  return fmt::format("\n  {} ({}):\n    {}", title, items.size(), fmt::join(items, "\n    "));
}

}  // namespace

std::string to_string(WeightFormat format) {
  switch (format) {
    case WeightFormat::Auto: return "auto";
    case WeightFormat::Ours: return "ours";
    case WeightFormat::HuggingFaceBert: return "hf-bert";
    case WeightFormat::TimmViT: return "timm-vit";
    case WeightFormat::TorchvisionViT: return "torchvision-vit";
    case WeightFormat::TorchvisionResNet: return "torchvision-resnet";
  }
  return "?";
}

WeightFormat parse_weight_format(const std::string& name) {
  for (auto f : {WeightFormat::Auto, WeightFormat::Ours, WeightFormat::HuggingFaceBert, WeightFormat::TimmViT,
                 WeightFormat::TorchvisionViT, WeightFormat::TorchvisionResNet}) {
    if (to_string(f) == name) return f;
  }
  MGCA_FAIL("unknown weight format '{}' (auto, ours, hf-bert, timm-vit, torchvision-vit, torchvision-resnet)",
            name);
}

std::string LoadReport::summary() const {
  return fmt::format(
      "format {}: {} loaded, {} skipped, {} resized, {} folded, {} missing, {} unexpected, {} mis-shaped",
      to_string(format), loaded.size(), skipped.size(), resized.size(), folded.size(), missing.size(),
      unexpected.size(), mismatched.size());
}

torch::Tensor resize_position_embedding(const torch::Tensor& pos, int64_t new_grid) {
  MGCA_CHECK(pos.dim() == 3 && pos.size(0) == 1, "position embedding must be [1, 1 + g², D], got {}",
             detail::dims(pos.sizes()));
  const int64_t tokens = pos.size(1) - 1, dim = pos.size(2);
  const auto old_grid = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(tokens))));
  MGCA_CHECK(old_grid * old_grid == tokens, "position embedding has {} patch positions, not a square grid",
             tokens);
  if (old_grid == new_grid) return pos;
  torch::NoGradGuard no_grad;
  const auto cls = pos.narrow(1, 0, 1);
  auto grid = pos.narrow(1, 1, tokens).reshape({1, old_grid, old_grid, dim}).permute({0, 3, 1, 2}).to(torch::kFloat);
  grid = at::upsample_bicubic2d(grid, {new_grid, new_grid}, /*align_corners=*/false);
  grid = grid.permute({0, 2, 3, 1}).reshape({1, new_grid * new_grid, dim}).to(pos.scalar_type());
  return at::cat({cls, grid}, 1);
}

std::vector<std::pair<std::string, torch::Tensor>> state_tensors(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  return out;
}

// Checkpoints of heads with a bias before each BatchNorm (ours before the
// biases were dropped, heads/h) carry fc1.bias and fc2.bias. BN(xW + b) in
// train mode equals BN(xW) exactly (the batch mean absorbs b); in eval mode it
// equals BN(xW) with running_mean − b. So each such bias is folded into the
// following BatchNorm's running mean (in float64) and not loaded.
void fold_head_biases(const torch::nn::Module& module, Translated& tr, std::vector<std::string>& folded) {
  // The module itself, then its descendants (named_modules(include_self) needs a shared_ptr).
  std::vector<std::string> prefixes;
  if (dynamic_cast<const ProjectionHeadImpl*>(&module) != nullptr) prefixes.emplace_back();
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    if (item.value()->as<ProjectionHeadImpl>() != nullptr) prefixes.push_back(item.key() + ".");
  }
  for (const auto& prefix : prefixes) {
    for (const auto& [fc, bn] : {std::pair<const char*, const char*>{"fc1", "bn1"}, {"fc2", "bn2"}}) {
      const auto bias = tr.tensors.find(prefix + fc + ".bias");
      const auto mean = tr.tensors.find(prefix + bn + ".running_mean");
      if (bias == tr.tensors.end() || mean == tr.tensors.end() || bias->second.sizes() != mean->second.sizes()) {
        continue;  // left to the strict check (unexpected / missing)
      }
      torch::NoGradGuard no_grad;
      mean->second =
          (mean->second.to(torch::kFloat64) - bias->second.to(torch::kFloat64)).to(mean->second.scalar_type());
      folded.push_back(fmt::format("{} into {}", tr.origin[bias->first], mean->first));
      tr.origin.erase(bias->first);
      tr.tensors.erase(bias);
    }
  }
}

LoadReport load_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                        const LoadOptions& options, const std::string& source) {
  // Prefix selection and "module." removal.
  std::map<std::string, torch::Tensor> src;
  size_t outside_prefix = 0;
  for (const auto& [raw, tensor] : tensors) {
    std::string name = starts_with(raw, "module.") ? raw.substr(7) : raw;
    if (!options.prefix.empty()) {
      if (!starts_with(name, options.prefix)) {
        ++outside_prefix;
        continue;
      }
      name = name.substr(options.prefix.size());
    }
    src.emplace(name, tensor);
  }
  LoadReport report;
  report.format = options.format == WeightFormat::Auto ? detect(module, src) : options.format;
  check_format_fits(module, report.format, source);

  Translated tr;
  switch (report.format) {
    case WeightFormat::HuggingFaceBert:
      tr = translate_hf_bert(src, dynamic_cast<const BertImpl&>(module).config());
      break;
    case WeightFormat::TimmViT: tr = translate_timm_vit(src); break;
    case WeightFormat::TorchvisionViT: tr = translate_torchvision_vit(src); break;
    case WeightFormat::TorchvisionResNet: tr = translate_identity(src, {"fc."}); break;
    default: tr = translate_identity(src, {}); break;
  }
  fold_head_biases(module, tr, report.folded);
  report.skipped = tr.skipped;
  report.unexpected = tr.unexpected;
  report.mismatched = tr.mismatched;
  report.missing = tr.missing;

  // Match against the module; nothing is copied until every check passed.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (ours, value)
  std::set<std::string> used;
  const auto* vit = dynamic_cast<const ViTImpl*>(&module);
  for (auto& [name, target] : state_tensors(module)) {
    auto it = tr.tensors.find(name);
    if (it == tr.tensors.end()) {
      // qkv parts already reported as missing by the translation.
      const bool reported = std::any_of(report.missing.begin(), report.missing.end(),
                                        [&](const std::string& m) { return starts_with(m, name + " "); }) ||
                            std::any_of(report.mismatched.begin(), report.mismatched.end(), [&](const std::string& m) {
                              return m.find("(part of " + name + ")") != std::string::npos;
                            });
      if (!reported) report.missing.push_back(name);
      continue;
    }
    used.insert(name);
    auto value = it->second;
    const auto& theirs = tr.origin[name];
    if (vit && name == "pos_embed" && value.sizes() != target.sizes() && options.interpolate_positions &&
        value.dim() == 3 && value.size(2) == target.size(2)) {
      const auto old_shape = shape_string(value);
      value = resize_position_embedding(value, vit->config().grid());
      report.resized.push_back(fmt::format("{}: {} → {}", name, old_shape, shape_string(value)));
    }
    if (value.numel() == 1 && target.numel() == 1 && value.dim() <= 1 && target.dim() <= 1) {
      value = value.reshape(target.sizes());  // scalars saved as [] or [1] (num_batches_tracked)
    }
    if (value.sizes() != target.sizes()) {
      report.mismatched.push_back(fmt::format("{}: checkpoint {}, model {}{}", name, shape_string(value),
                                              shape_string(target), theirs == name ? "" : " (from " + theirs + ")"));
      continue;
    }
    const bool dtype_ok = options.same_dtype ? value.scalar_type() == target.scalar_type()
                                             : value.is_floating_point() == target.is_floating_point();
    if (!dtype_ok) {
      report.mismatched.push_back(fmt::format("{}: checkpoint dtype {}, model dtype {}", name,
                                              c10::toString(value.scalar_type()), c10::toString(target.scalar_type())));
      continue;
    }
    copies.emplace_back(target, value);
    report.loaded.push_back(name);
  }
  for (const auto& [name, tensor] : tr.tensors) {
    if (!used.count(name)) {
      report.unexpected.push_back(tr.origin[name] == name ? name : fmt::format("{} (as {})", tr.origin[name], name));
    }
  }
  if (!report.complete()) {
    const std::string details = bullet_list("missing", report.missing) + bullet_list("unexpected", report.unexpected) +
                                bullet_list("mis-shaped", report.mismatched);
    MGCA_CHECK(!options.strict, "{}: cannot load into {} ({}); use a partial load to accept this:{}", source,
               module.name(), report.summary(), details);
    log::warn("{}: partial load into {}: {}{}", source, module.name(), report.summary(), details);
  }
  {
    torch::NoGradGuard no_grad;
    for (auto& [target, value] : copies) target.copy_(value);
  }
  if (outside_prefix > 0) {
    report.skipped.push_back(fmt::format("{} tensors outside prefix '{}'", outside_prefix, options.prefix));
  }
  return report;
}

LoadReport load_weights(torch::nn::Module& module, const std::filesystem::path& file, const LoadOptions& options) {
  return load_weights(module, io::load_safetensors(file), options, file.string());
}

}  // namespace mgca::model
