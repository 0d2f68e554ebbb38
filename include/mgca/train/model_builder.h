// The model configurations a training Config describes (no torch): the one
// place that maps model::ModelOptions (and the objectives' word-pairing quirk)
// onto the model module's shapes, for training, evaluation and export.
#pragma once

#include <cstdint>

#include "mgca/model/config.h"
#include "mgca/train/config.h"

namespace mgca::train {

// Method::Mgca. vocab_size: the tokenizer's (the BERT embedding rows).
model::MgcaModelConfig mgca_model_config(const Config& config, int64_t vocab_size);
// Method::Convirt.
model::ConvirtModelConfig convirt_model_config(const Config& config, int64_t vocab_size);
// The image encoder alone (model.image_encoder, image_size, resnet_input_size);
// which kinds are ViTs and their presets are the model module's
// (model::is_vit, model::vit_preset).
model::ViTConfig vit_config(const model::ModelOptions& model);
model::ResNetConfig resnet_config(const model::ModelOptions& model);

}  // namespace mgca::train
