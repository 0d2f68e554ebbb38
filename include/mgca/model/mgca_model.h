// The assembled MGCA model (docs/contract.md §2, §3): image encoder (ViT-B/16 or
// ResNet-50) + the first 6 BERT layers, global/local heads for each side
// (in → 2048 → 128, SyncBatchNorm), and the prototype layer (K=500 × 128).
//
// Parameter names: image.* (vit.h / resnet.h names), text.* (bert.h names),
// image_global_head.*, image_local_head.head.*, text_global_head.*,
// text_local_head.head.*, prototypes.weight.
//
// Across ranks: forward runs collectives only inside SyncBatchNorm (when a
// communicator of size > 1 is set): every rank must call forward (and
// backward) in the same order. All outputs cover the local batch only.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <memory>

#include "mgca/comm/communicator.h"
#include "mgca/model/bert.h"
#include "mgca/model/config.h"
#include "mgca/model/heads.h"
#include "mgca/model/image_encoder.h"
#include "mgca/model/word_aggregation.h"

namespace mgca::model {

// What the objectives need (docs/contract.md §2). b: local batch, d: embed_dim (128),
// P: patches (196 ViT-B/16 at 224, 361 ResNet-50 at 299), S = L-1 words
// (111 for 112 tokens). Embeddings are L2-normalized along the last dim
// (normalizing again is a no-op with the same gradient); weights are raw
// (not clipped or normalized: the objectives do that) and carry no gradient.
struct MgcaOutputs {
  torch::Tensor img_emb;       // [b, d]     global image embedding v_i
  torch::Tensor report_emb;    // [b, d]     global report embedding t_i
  torch::Tensor patch_emb;     // [b, P, d]  local image embeddings p_k
  torch::Tensor word_emb;      // [b, S, d]  local word embeddings w_j (pad words included)
  torch::Tensor patch_weight;  // [b, P]     ViT: last-block [CLS]→patch attention, mean over heads;
                               //            ResNet: 1/P everywhere
  torch::Tensor word_weight;   // [b, S]     Σ over a word's subwords of the last BERT layer's [CLS]
                               //            attention (mean over heads); 0 at pad words
  torch::Tensor word_mask;     // [b, S]     bool, true at pad words
  bool patch_weight_from_attention = false;  // true for ViT (CTA clips it), false for ResNet
};

class MgcaModelImpl : public torch::nn::Module {
 public:
  // `vocab` (continuation table and [SEP] id) comes from the tokenizer:
  // {tokenizer.continuation_table(), tokenizer.sep_id()}.
  MgcaModelImpl(const MgcaModelConfig& config, WordVocabulary vocab);

  // images [b, 1|3, H, W] float; input_ids, attention_mask [b, L] int64.
  MgcaOutputs forward(const torch::Tensor& images, const torch::Tensor& input_ids,
                      const torch::Tensor& attention_mask);

  // The backbones' features alone (no heads), e.g. for evaluation.
  ImageFeatures encode_image(const torch::Tensor& images);
  TextFeatures encode_text(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);

  // Every SyncBatchNorm (heads, and the ResNet backbone) synchronizes over
  // `comm` when config.sync_batchnorm, else stays per-process.
  void set_communicator(const std::shared_ptr<comm::Communicator>& comm);

  const MgcaModelConfig& config() const { return config_; }
  const WordVocabulary& vocabulary() const { return vocab_; }

  std::shared_ptr<ImageEncoderImpl> image;
  Bert text{nullptr};
  ProjectionHead image_global_head{nullptr}, text_global_head{nullptr};
  LocalHead image_local_head{nullptr}, text_local_head{nullptr};
  Prototypes prototypes{nullptr};

 private:
  MgcaModelConfig config_;
  WordVocabulary vocab_;
};
TORCH_MODULE(MgcaModel);

// ConVIRT (docs/contract.md §2.5): ResNet-50 global features and 12-layer BERT with
// embeddings + first 6 layers frozen, max-pooled over the last layer's
// non-pad tokens; heads Linear–ReLU–Linear → 512. Names: image.*, text.*,
// image_head.*, text_head.*.
struct ConvirtOutputs {
  torch::Tensor img_emb;   // [b, 512], L2-normalized
  torch::Tensor text_emb;  // [b, 512], L2-normalized
};

class ConvirtModelImpl : public torch::nn::Module {
 public:
  explicit ConvirtModelImpl(const ConvirtModelConfig& config);
  ConvirtOutputs forward(const torch::Tensor& images, const torch::Tensor& input_ids,
                         const torch::Tensor& attention_mask);
  // Max over the non-pad tokens of the last layer: [b, H].
  torch::Tensor encode_text(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  void set_communicator(const std::shared_ptr<comm::Communicator>& comm);
  const ConvirtModelConfig& config() const { return config_; }

  std::shared_ptr<ImageEncoderImpl> image;
  Bert text{nullptr};
  MlpHead image_head{nullptr}, text_head{nullptr};

 private:
  ConvirtModelConfig config_;
};
TORCH_MODULE(ConvirtModel);

}  // namespace mgca::model
