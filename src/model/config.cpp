#include "mgca/model/config.h"

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

MgcaModelConfig MgcaModelConfig::vit_base() { return MgcaModelConfig{}; }

MgcaModelConfig MgcaModelConfig::resnet_base() {
  MgcaModelConfig c;
  c.backbone = ImageBackbone::ResNet;
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

ConvirtModelConfig ConvirtModelConfig::convirt() {
  ConvirtModelConfig c;
  c.bert = BertConfig::clinical(12);
  c.bert.freeze_embeddings = true;
  c.bert.frozen_layers = 6;
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

}  // namespace mgca::model
