// Vision Transformer with timm/DeiT parameter names, so a timm checkpoint
// loads name for name (torchvision's vit_b_16 through model/weights.h):
//   patch_embed.proj.{weight [D,3,p,p], bias [D]}, cls_token [1,1,D],
//   pos_embed [1,1+P,D], blocks.i.{norm1, attn.qkv, attn.proj, norm2,
//   mlp.fc1, mlp.fc2}.{weight,bias}, norm.{weight,bias}.
//
// forward(images [b, C∈{1,3}, S, S], S = image_size) returns
//   global [b, D] (final-norm [CLS]), local [b, P, D] (final-norm patches),
//   patch_attention [b, P] (last block, [CLS] row, mean over heads, no grad).
// Stateless across ranks: no collectives.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "mgca/model/config.h"
#include "mgca/model/image_encoder.h"

namespace mgca::model {

class ViTBlockImpl : public torch::nn::Module {
 public:
  explicit ViTBlockImpl(const ViTConfig& config);
  // x [b, N, D] → [b, N, D]. When cls_attention is given, it receives the
  // [CLS] row of this block's attention probabilities, mean over heads,
  // [b, N] (no grad).
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* cls_attention = nullptr);

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr};  // attn.qkv, attn.proj
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};   // mlp.fc1, mlp.fc2

 private:
  int64_t heads_;
};
TORCH_MODULE(ViTBlock);

class ViTImpl : public ImageEncoderImpl {
 public:
  explicit ViTImpl(const ViTConfig& config);
  ImageFeatures forward(const torch::Tensor& images) override;
  int64_t global_dim() const override { return config_.dim; }
  int64_t local_dim() const override { return config_.dim; }
  int64_t num_patches(int64_t image_size) const override;
  bool has_patch_attention() const override { return true; }
  const ViTConfig& config() const { return config_; }
  void reset_parameters();  // timm's init: trunc_normal(0.02) weights, zero biases

  torch::nn::Conv2d patch_proj{nullptr};  // patch_embed.proj
  torch::Tensor cls_token, pos_embed;
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  ViTConfig config_;
};
TORCH_MODULE(ViT);

}  // namespace mgca::model
