#include "mgca/train/model_builder.h"

namespace mgca::train {
namespace {

model::BertConfig bert_config(const model::ModelOptions& m, int64_t vocab_size) {
  model::BertConfig b = model::bert_preset(m.text_encoder, vocab_size);
  b.num_layers = m.text_layers;
  b.hidden_dropout = m.dropout;
  b.attention_dropout = m.dropout;
  b.freeze_embeddings = m.freeze_text_embeddings;
  b.frozen_layers = m.freeze_text_layers;
  return b;
}

// What the MGCA and ConVIRT models take alike from the job: the text encoder,
// the embedding width and the BatchNorm mode.
template <typename ModelConfigT>
void set_shared_shapes(ModelConfigT& c, const model::ModelOptions& m, int64_t vocab_size) {
  c.bert = bert_config(m, vocab_size);
  c.embed_dim = m.embed_dim;
  c.sync_batchnorm = m.batchnorm == model::BatchNormMode::Sync;
}

}  // namespace

model::ViTConfig vit_config(const model::ModelOptions& m) {
  model::ViTConfig c = model::vit_preset(m.image_encoder);
  c.image_size = m.image_size;
  return c;
}

model::ResNetConfig resnet_config(const model::ModelOptions& m) {
  return model::resnet_preset(m.image_encoder, m.resnet_input_size);
}

model::MgcaModelConfig mgca_model_config(const Config& config, int64_t vocab_size) {
  const model::ModelOptions& m = config.model;
  model::MgcaModelConfig c;
  c.backbone = model::backbone_of(m.image_encoder);
  if (c.backbone == model::ImageBackbone::ViT) {
    c.vit = vit_config(m);
  } else {
    c.resnet = resnet_config(m);
  }
  set_shared_shapes(c, m, vocab_size);
  c.head_hidden = m.head_hidden;
  c.num_prototypes = m.num_prototypes;
  c.words.official_pairing = config.objectives.quirk_cls_attention_off_by_one;
  return c;
}

model::ConvirtModelConfig convirt_model_config(const Config& config, int64_t vocab_size) {
  const model::ModelOptions& m = config.model;
  model::ConvirtModelConfig c;
  c.resnet = resnet_config(m);
  set_shared_shapes(c, m, vocab_size);
  c.image_head_hidden = m.head_hidden;
  c.text_head_hidden = m.text_head_hidden;
  return c;
}

}  // namespace mgca::train
