// What the dense downstream protocols (segmentation, detection) share: the
// ResNet's multi-scale features, the input normalisation, how rows are split
// over ranks, which training images a label fraction keeps.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "mgca/model/resnet.h"

namespace mgca::eval {

// The stem (/2) and layer1..layer4 (/4../32) of a ResNet, without the
// encoder's own input resize. Run under NoGradGuard by the caller (MGCA's U-Net and YOLO backbones take the
// torchvision stages as they are).
std::vector<torch::Tensor> resnet_pyramid(model::ResNetImpl& resnet, const torch::Tensor& images);

// The square input side of a downstream head: `requested` when positive,
// else a ViT's image size or 224 for a ResNet (MGCA's imsize).
int64_t downstream_input_size(const model::ImageEncoderImpl& encoder, int64_t requested);

// Downstream images as MGCA's segmentation and detection datasets feed them:
// uint8 [b, 1, s, s] → float32 scaled to [0, 1] and Normalize(0.5, 0.5).
torch::Tensor normalise_downstream_images(const torch::Tensor& images_uint8);

// Rank `rank`'s contiguous share of `rows` among `size` ranks (rows n·r/W ..
// n·(r+1)/W): how the downstream protocols split a global batch or a split.
// 0, 1, ..., n − 1: every row of a split.
std::vector<int64_t> all_rows(int64_t n);
std::vector<int64_t> rank_share(const std::vector<int64_t>& rows, int rank, int size);

// The training rows a label fraction keeps, ascending: max(1, floor(f · n))
// rows of a seeded permutation (all n when f = 1), identical on every rank
// (MGCA: np.random.choice of int(f · n) image ids).
std::vector<int64_t> fraction_rows(int64_t n, double fraction, uint64_t seed);

}  // namespace mgca::eval
