#include "mgca/train/model_builder.h"

#include "mgca/util/error.h"

namespace mgca::train {
namespace {

model::BertConfig bert_config(const ModelConfig& m, int64_t vocab_size) {
  model::BertConfig b = m.text_encoder == "bert_tiny" ? model::BertConfig::tiny(vocab_size)
                                                      : model::BertConfig::clinical(m.text_layers);
  b.vocab_size = vocab_size;
  b.num_layers = m.text_layers;
  b.hidden_dropout = m.dropout;
  b.attention_dropout = m.dropout;
  b.freeze_embeddings = m.freeze_text_embeddings;
  b.frozen_layers = m.freeze_text_layers;
  return b;
}

}  // namespace

bool is_vit(const ModelConfig& model) { return model.image_encoder.rfind("vit", 0) == 0; }

model::ViTConfig vit_preset(const ModelConfig& m) {
  MGCA_CHECK(is_vit(m), "model.image_encoder \"{}\" is not a ViT", m.image_encoder);
  return m.image_encoder == "vit_b16" ? model::ViTConfig::base16() : model::ViTConfig::tiny();
}

model::ViTConfig vit_config(const ModelConfig& m) {
  model::ViTConfig c = vit_preset(m);
  c.image_size = m.image_size;
  return c;
}

model::ResNetConfig resnet_config(const ModelConfig& m) {
  MGCA_CHECK(!is_vit(m), "model.image_encoder \"{}\" is not a ResNet", m.image_encoder);
  return m.image_encoder == "resnet50" ? model::ResNetConfig::resnet50(m.resnet_input_size)
                                       : model::ResNetConfig::tiny(m.resnet_input_size);
}

model::MgcaModelConfig mgca_model_config(const Config& config, int64_t vocab_size) {
  const ModelConfig& m = config.model;
  model::MgcaModelConfig c;
  if (is_vit(m)) {
    c.backbone = model::ImageBackbone::ViT;
    c.vit = vit_config(m);
  } else {
    c.backbone = model::ImageBackbone::ResNet;
    c.resnet = resnet_config(m);
  }
  c.bert = bert_config(m, vocab_size);
  c.head_hidden = m.head_hidden;
  c.embed_dim = m.embed_dim;
  c.num_prototypes = m.num_prototypes;
  c.sync_batchnorm = m.batchnorm == "sync";
  c.words.official_pairing = config.objectives.quirk_cls_attention_off_by_one;
  return c;
}

model::ConvirtModelConfig convirt_model_config(const Config& config, int64_t vocab_size) {
  const ModelConfig& m = config.model;
  model::ConvirtModelConfig c;
  c.resnet = resnet_config(m);
  c.bert = bert_config(m, vocab_size);
  c.image_head_hidden = m.head_hidden;
  c.text_head_hidden = m.text_head_hidden;
  c.embed_dim = m.embed_dim;
  c.sync_batchnorm = m.batchnorm == "sync";
  return c;
}

}  // namespace mgca::train
