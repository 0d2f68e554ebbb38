// Image preprocessing of evaluation (torch, no model).
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace mgca::eval {

// MGCA's test transform, CenterCrop(crop) + Normalize(0.5, 0.5), exactly the
// data module's `eval` pipeline (data::augment_image, Pipeline::Eval): the
// same geometry as training's random crop S → crop, so the encoder sees
// pixels at the scale it was trained on. Stored uint8 images [n, S, S] →
// float [n, 1, crop, crop]. S < crop is an error (re-import the dataset
// with a larger `mgca prep --image-size`).
torch::Tensor preprocess_images(const torch::Tensor& images_uint8, int64_t crop);

}  // namespace mgca::eval
