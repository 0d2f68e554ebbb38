// Shapes and options of the encoders, heads and assembled models (no torch).
//
// The presets are docs/contract.md §3's: vit_b16 (ViT-B/16 at 224), resnet50 (torchvision
// layout, MGCA upsamples its input to 299), bert (Bio_ClinicalBERT shapes),
// and *_tiny variants for the CPU demo and CI (the same code, small shapes).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "mgca/util/option_types.h"

namespace mgca::model {

// The encoders a job names (model.image_encoder, model.text_encoder): the
// contract's shapes or the *_tiny ones of the same code.
enum class ImageEncoderKind { VitB16, VitTiny, Resnet50, Resnet50Tiny };
inline constexpr util::NamedValue<ImageEncoderKind> kImageEncoderKindNames[] = {
    {ImageEncoderKind::VitB16, "vit_b16"},
    {ImageEncoderKind::VitTiny, "vit_tiny"},
    {ImageEncoderKind::Resnet50, "resnet50"},
    {ImageEncoderKind::Resnet50Tiny, "resnet50_tiny"}};
constexpr const auto& enum_names(ImageEncoderKind) { return kImageEncoderKindNames; }

enum class TextEncoderKind { Bert, BertTiny };  // Bio_ClinicalBERT shapes | small ones
inline constexpr util::NamedValue<TextEncoderKind> kTextEncoderKindNames[] = {{TextEncoderKind::Bert, "bert"},
                                                                               {TextEncoderKind::BertTiny, "bert_tiny"}};
constexpr const auto& enum_names(TextEncoderKind) { return kTextEncoderKindNames; }

// BatchNorm statistics over the global batch (SyncBatchNorm) or each rank's own.
enum class BatchNormMode { Sync, PerRank };
inline constexpr util::NamedValue<BatchNormMode> kBatchNormModeNames[] = {{BatchNormMode::Sync, "sync"},
                                                                           {BatchNormMode::PerRank, "per_rank"}};
constexpr const auto& enum_names(BatchNormMode) { return kBatchNormModeNames; }

// Vision Transformer, timm/DeiT layout: patch embedding (conv p×p, stride p),
// [CLS] token, learned absolute positions, pre-norm blocks with qkv bias,
// exact (erf) GELU, final LayerNorm.
struct ViTConfig {
  int64_t image_size = 224;
  int64_t patch_size = 16;
  int64_t dim = 768;
  int64_t depth = 12;
  int64_t heads = 12;
  int64_t mlp_dim = 3072;
  double ln_eps = 1e-6;
  bool qkv_bias = true;

  int64_t grid() const { return image_size / patch_size; }
  int64_t num_patches() const { return grid() * grid(); }

  static ViTConfig base16();  // ViT-B/16: 224 px, dim 768, depth 12, heads 12, MLP 3072
  static ViTConfig tiny();    // 64 px, patch 8, dim 192, depth 4, heads 3, MLP 768
};

// ResNet with torchvision's Bottleneck (stride on the 3×3 conv, "v1.5").
// global = avgpool(layer4) [b, 2048·width/64]; local = layer3 [b, P, 1024·width/64].
struct ResNetConfig {
  std::array<int64_t, 4> layers{3, 4, 6, 3};
  int64_t width = 64;       // stem channels; stage s has width·2^s bottleneck channels
  int64_t input_size = 0;   // > 0: bilinear resize (align_corners) of the input to this square size
  bool channels_last = false;  // run the convolutions in NHWC memory format

  int64_t global_dim() const { return width * 8 * 4; }
  int64_t local_dim() const { return width * 4 * 4; }
  // Patches of layer3 (stride 16) for an input of `size` pixels (after the resize).
  int64_t num_patches(int64_t size) const;

  static ResNetConfig resnet50(int64_t input_size = 0);
  static ResNetConfig tiny(int64_t input_size = 0);  // layers 1,1,1,1, width 16
};

// BERT encoder (post-norm, erf GELU). `num_layers` is how many layers are
// built and run: MGCA uses the first 6 of Bio_ClinicalBERT's 12; the rest of
// a 12-layer checkpoint is skipped on load.
struct BertConfig {
  int64_t vocab_size = 28996;
  int64_t hidden = 768;
  int64_t num_layers = 12;
  int64_t heads = 12;
  int64_t intermediate = 3072;
  int64_t max_positions = 512;
  int64_t type_vocab_size = 2;
  double ln_eps = 1e-12;
  double hidden_dropout = 0.1;     // Bio_ClinicalBERT's config (active in train mode)
  double attention_dropout = 0.1;
  bool freeze_embeddings = false;  // ConVIRT: true
  int64_t frozen_layers = 0;       // the first n layers get no gradient (ConVIRT: 6)

  static BertConfig clinical(int64_t num_layers = 12);  // Bio_ClinicalBERT shapes
  static BertConfig tiny(int64_t vocab_size = 28996);    // 2 layers, hidden 128, 2 heads, 512
};

// Subword → word aggregation of the MGCA text side (docs/contract.md §2.2 quirk (b)).
struct WordAggregationOptions {
  // true (official): token t is paired with the [CLS] attention to token
  // t+1, only tokens 0..L-2 are visited (a report whose [SEP] is the last
  // token loses its last word and gets no [SEP] word), and a '##' token right
  // after [CLS] merges into the [CLS] word. false (paper): token t gets the
  // attention to itself, every token up to [SEP] is visited, [CLS] is always
  // a word of its own.
  bool official_pairing = true;
};

enum class ImageBackbone { ViT, ResNet };

// The presets of each encoder kind: the one place that knows which kind is
// a ViT and which shapes (and so which native image size) it has.
ImageBackbone backbone_of(ImageEncoderKind kind);
inline bool is_vit(ImageEncoderKind kind) { return backbone_of(kind) == ImageBackbone::ViT; }
ViTConfig vit_preset(ImageEncoderKind kind);  // an error for a ResNet kind
ResNetConfig resnet_preset(ImageEncoderKind kind, int64_t input_size);  // an error for a ViT kind
BertConfig bert_preset(TextEncoderKind kind, int64_t vocab_size);

// MGCA (docs/contract.md §2, §3): image encoder + first 6 BERT layers, 128-d heads, K=500 prototypes.
struct MgcaModelConfig {
  ImageBackbone backbone = ImageBackbone::ViT;
  ViTConfig vit = ViTConfig::base16();
  ResNetConfig resnet = ResNetConfig::resnet50(299);
  BertConfig bert = BertConfig::clinical(6);
  int64_t head_hidden = 2048;
  int64_t embed_dim = 128;
  int64_t num_prototypes = 500;
  // BatchNorm statistics over the global batch (SyncBatchNorm) in the heads
  // and in the ResNet backbone; false: each rank's own batch.
  bool sync_batchnorm = true;
  WordAggregationOptions words;

  static MgcaModelConfig tiny(ImageBackbone backbone = ImageBackbone::ViT);
};

// ConVIRT (docs/contract.md §2.5): ResNet-50 + 12-layer BERT with embeddings and the
// first 6 layers frozen, max-pool over the last layer's non-pad tokens,
// heads Linear–ReLU–Linear → 512.
struct ConvirtModelConfig {
  ResNetConfig resnet = ResNetConfig::resnet50();
  BertConfig bert;  // the paper's: clinical(12), embeddings + 6 layers frozen (the job sets them)
  int64_t image_head_hidden = 2048;  // hidden width of the image head (its input width)
  int64_t text_head_hidden = 768;
  int64_t embed_dim = 512;
  bool sync_batchnorm = true;  // the ResNet's BatchNorm layers

  static ConvirtModelConfig tiny();
};

}  // namespace mgca::model
