// Image preprocessing of evaluation (torch, no model).
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace mgca::eval {

// MGCA's test transform generalized to any stored size: stored uint8 S×S
// images [n, S, S] → float [n, 1, crop, crop]. With R = round(crop·256/224):
// S > R is first resized to R×R (bilinear, antialiased), S < crop is resized
// up to crop×crop, crop ≤ S ≤ R is left as is; then the centre crop×crop is
// taken (torchvision's CenterCrop offsets) and normalized to
// (x/255 − 0.5)/0.5. For the paper setting (S = 256, crop = 224) this is
// exactly MGCA's CenterCrop(224) + Normalize(0.5, 0.5).
torch::Tensor preprocess_images(const torch::Tensor& images_uint8, int64_t crop);

}  // namespace mgca::eval
