// Pretrained-weight loading: public checkpoint names → ours.
//
// Formats (the source tensors' naming):
//   HuggingFaceBert    bert.embeddings.*, bert.encoder.layer.i.attention.self.{query,key,value}, …
//                      ("bert." optional; LayerNorm gamma/beta accepted). query/key/value
//                      are fused into our qkv; pooler.*, cls.*, position_ids and layers
//                      ≥ the model's num_layers are skipped (MGCA uses the first 6).
//   TimmViT            timm / DeiT names = ours; head.*, head_dist.* skipped.
//   TorchvisionViT     torchvision vit_b_16: conv_proj, class_token, encoder.pos_embedding,
//                      encoder.layers.encoder_layer_i.{ln_1, self_attention.in_proj_*,
//                      self_attention.out_proj, ln_2, mlp.linear_1|0, mlp.linear_2|3},
//                      encoder.ln; heads.* skipped.
//   TorchvisionResNet  torchvision resnet50 names = ours; fc.* skipped.
//   Ours               our own names (any module, e.g. a whole MgcaModel), nothing skipped.
//   Auto               detected from the names and the target module's type.
// A leading "module." (DDP) is removed. ViT position embeddings of another
// grid are resized as timm's resample_abs_pos_embed with antialias=False does
// (bicubic, align_corners=false, in float32; [CLS] kept).
//
// Projection heads (heads.h) have no bias before their BatchNorms: a
// checkpoint's fc1.bias / fc2.bias of a head is folded into bn1 / bn2's
// running_mean (running_mean − bias: the same head output in eval mode, and in
// train mode exactly) instead of being loaded.
//
// Strict (default): every parameter and buffer of the module must be filled
// with the right shape and every checkpoint tensor must be used or
// deliberately skipped; otherwise one error lists all missing, unexpected
// and mis-shaped tensors (with the checkpoint's names) and nothing is
// changed. Partial (strict = false): loads what matches, the report lists
// the rest. Loading is local: call it identically on every rank (or load on
// rank 0 and broadcast).
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mgca::model {

enum class WeightFormat { Auto, Ours, HuggingFaceBert, TimmViT, TorchvisionViT, TorchvisionResNet };

std::string to_string(WeightFormat format);
// "auto", "ours", "hf-bert", "timm-vit", "torchvision-vit", "torchvision-resnet".
WeightFormat parse_weight_format(const std::string& name);

struct LoadOptions {
  WeightFormat format = WeightFormat::Auto;
  bool strict = true;
  // Only checkpoint tensors under this prefix are considered, with the prefix
  // removed (e.g. "image." takes the image encoder out of an MGCA checkpoint).
  std::string prefix;
  bool interpolate_positions = true;
  // A tensor whose dtype differs from the module's is mis-shaped (our own
  // checkpoints on resume, which must continue bit for bit); otherwise
  // floating-point tensors are cast.
  bool same_dtype = false;
};

struct LoadReport {
  WeightFormat format = WeightFormat::Auto;
  std::vector<std::string> loaded;      // our names
  std::vector<std::string> missing;     // our names left unfilled (checkpoint name in parentheses)
  std::vector<std::string> unexpected;  // checkpoint names with no place in the module
  std::vector<std::string> mismatched;  // "name: checkpoint [..], model [..]"
  std::vector<std::string> skipped;     // checkpoint names deliberately not used
  std::vector<std::string> resized;     // position embeddings interpolated
  std::vector<std::string> folded;      // head biases folded into BatchNorm running means
  bool complete() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string summary() const;
};

// `source` names the origin in messages (a file path).
LoadReport load_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                        const LoadOptions& options = {}, const std::string& source = "<tensors>");
LoadReport load_weights(torch::nn::Module& module, const std::filesystem::path& file,
                        const LoadOptions& options = {});

// Every parameter and buffer under our names (what a checkpoint stores).
std::vector<std::pair<std::string, torch::Tensor>> state_tensors(const torch::nn::Module& module);

// Position-embedding resampling, pos [1, 1 + g0², D] → [1, 1 + g1², D]: timm's
// resample_abs_pos_embed(..., interpolation="bicubic", antialias=False) (DeiT's
// and BLIP's rule; timm's own checkpoint filter defaults to antialias=True).
torch::Tensor resize_position_embedding(const torch::Tensor& pos, int64_t new_grid);

}  // namespace mgca::model
