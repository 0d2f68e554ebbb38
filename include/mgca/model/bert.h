// BERT encoder (post-norm, erf GELU) with Bio_ClinicalBERT shapes.
//
// Our parameter names (a Hugging Face checkpoint maps onto them through
// model/weights.h; query/key/value are fused into one qkv matrix):
//   embeddings.{word_embeddings, position_embeddings, token_type_embeddings}.weight,
//   embeddings.norm.{weight,bias},
//   layers.i.{attn.qkv [3H, H], attn.proj, norm1, fc1, fc2, norm2}.{weight,bias}
//
// forward(input_ids [b, L] int64, attention_mask [b, L] (1 real, 0 pad)):
//   hidden [b, L, H]: the last layer's token states;
//   cls_attention [b, L]: the last layer's attention probabilities from
//   [CLS] (query 0) to every token, averaged over heads, without gradient
//   (MGCA's word weights; official code: attentions[-1][:, :, 0, 1:] is
//   cls_attention[:, 1:]). Pad keys get the additive mask −10000 (as the
//   reference), i.e. probability 0.
// Token type ids are all 0 (single-segment reports). Dropout follows the
// module's train()/eval() mode. Frozen parts (config.freeze_embeddings,
// config.frozen_layers) have requires_grad = false and run without autograd
// recording. No collectives.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "mgca/model/config.h"

namespace mgca::model {

struct TextFeatures {
  torch::Tensor hidden;         // [b, L, H]
  torch::Tensor cls_attention;  // [b, L], no grad
};

class BertLayerImpl : public torch::nn::Module {
 public:
  explicit BertLayerImpl(const BertConfig& config);
  // x [b, L, H]; mask additive [b, 1, 1, L] or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask,
                        torch::Tensor* cls_attention = nullptr);

  torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc1{nullptr}, fc2{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};

 private:
  BertConfig config_;
};
TORCH_MODULE(BertLayer);

class BertImpl : public torch::nn::Module {
 public:
  explicit BertImpl(const BertConfig& config);
  TextFeatures forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  const BertConfig& config() const { return config_; }
  // Applies config.freeze_embeddings / config.frozen_layers to requires_grad.
  void apply_freezing();
  void reset_parameters();  // BERT's init: normal(0.02) weights, zero biases, LN 1/0

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr},
      token_type_embeddings{nullptr};
  torch::nn::LayerNorm embeddings_norm{nullptr};
  torch::nn::ModuleList layers{nullptr};

 private:
  torch::Tensor embed(const torch::Tensor& input_ids);
  BertConfig config_;
};
TORCH_MODULE(Bert);

}  // namespace mgca::model
