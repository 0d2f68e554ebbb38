#include "mgca/model/config.h"

#include "mgca/util/error.h"

namespace mgca::model {

ViTConfig ViTConfig::base16() { return ViTConfig{}; }

ViTConfig ViTConfig::tiny() {
  ViTConfig c;
  c.image_size = 64;
  c.patch_size = 8;
  c.dim = 192;
  c.depth = 4;
  c.heads = 3;
  c.mlp_dim = 768;
  return c;
}

ResNetConfig ResNetConfig::resnet50(int64_t input_size) {
  ResNetConfig c;
  c.input_size = input_size;
  return c;
}

ResNetConfig ResNetConfig::tiny(int64_t input_size) {
  ResNetConfig c;
  c.layers = {1, 1, 1, 1};
  c.width = 16;
  c.input_size = input_size;
  return c;
}

BertConfig BertConfig::clinical(int64_t num_layers) {
  BertConfig c;
  c.num_layers = num_layers;
  return c;
}

BertConfig BertConfig::tiny(int64_t vocab_size) {
  BertConfig c;
  c.vocab_size = vocab_size;
  c.hidden = 128;
  c.num_layers = 2;
  c.heads = 2;
  c.intermediate = 512;
  c.max_positions = 128;
  return c;
}

MgcaModelConfig MgcaModelConfig::tiny(ImageBackbone backbone) {
  MgcaModelConfig c;
  c.backbone = backbone;
  c.vit = ViTConfig::tiny();
  c.resnet = ResNetConfig::tiny();
  c.bert = BertConfig::tiny();
  c.head_hidden = 256;
  c.embed_dim = 64;
  c.num_prototypes = 32;
  return c;
}

ConvirtModelConfig ConvirtModelConfig::tiny() {
  ConvirtModelConfig c;
  c.resnet = ResNetConfig::tiny();
  c.bert = BertConfig::tiny();
  c.bert.num_layers = 4;
  c.bert.freeze_embeddings = true;
  c.bert.frozen_layers = 2;
  c.image_head_hidden = c.resnet.global_dim();
  c.text_head_hidden = c.bert.hidden;
  c.embed_dim = 64;
  return c;
}

ImageBackbone backbone_of(ImageEncoderKind kind) {
  switch (kind) {
    case ImageEncoderKind::VitB16:
    case ImageEncoderKind::VitTiny: return ImageBackbone::ViT;
    case ImageEncoderKind::Resnet50:
    case ImageEncoderKind::Resnet50Tiny: return ImageBackbone::ResNet;
  }
  MGCA_FAIL("unknown image encoder kind {}", static_cast<int>(kind));
}

ViTConfig vit_preset(ImageEncoderKind kind) {
  MGCA_CHECK(is_vit(kind), "image encoder \"{}\" is not a ViT", util::enum_name(kind));
  return kind == ImageEncoderKind::VitB16 ? ViTConfig::base16() : ViTConfig::tiny();
}

ResNetConfig resnet_preset(ImageEncoderKind kind, int64_t input_size) {
  MGCA_CHECK(!is_vit(kind), "image encoder \"{}\" is not a ResNet", util::enum_name(kind));
  return kind == ImageEncoderKind::Resnet50 ? ResNetConfig::resnet50(input_size) : ResNetConfig::tiny(input_size);
}

BertConfig bert_preset(TextEncoderKind kind, int64_t vocab_size) {
  BertConfig c = kind == TextEncoderKind::BertTiny ? BertConfig::tiny(vocab_size) : BertConfig::clinical();
  c.vocab_size = vocab_size;
  return c;
}

}  // namespace mgca::model
