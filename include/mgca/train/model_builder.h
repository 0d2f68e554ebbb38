// The model configurations a training Config describes (no torch): the one
// place that maps train::ModelConfig (and the objectives' word-pairing quirk)
// onto the model module's shapes, for training, evaluation and export.
#pragma once

#include <cstdint>

#include "mgca/model/config.h"
#include "mgca/train/config.h"

namespace mgca::train {

// config.method == "mgca". vocab_size: the tokenizer's (the BERT embedding rows).
model::MgcaModelConfig mgca_model_config(const Config& config, int64_t vocab_size);
// config.method == "convirt".
model::ConvirtModelConfig convirt_model_config(const Config& config, int64_t vocab_size);
// The image encoder alone (model.image_encoder, image_size, resnet_input_size).
model::ViTConfig vit_config(const ModelConfig& model);
// The ViT preset of model.image_encoder as built, before model.image_size
// applies (its image_size is the one the preset's weights expect).
model::ViTConfig vit_preset(const ModelConfig& model);
model::ResNetConfig resnet_config(const ModelConfig& model);
bool is_vit(const ModelConfig& model);

}  // namespace mgca::train
