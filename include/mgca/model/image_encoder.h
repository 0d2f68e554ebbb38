// The common interface of the image encoders (ViT, ResNet).
//
// Input images: float [b, C, H, W] with C = 1 (the loader's gray images) or
// C = 3. For C = 1 the first layer's RGB weights are summed over the input
// channels, which equals replicating the gray image to RGB (3× cheaper); the
// stored weights stay 3-channel, so pretrained RGB checkpoints load as they are.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

namespace mgca::model {

struct ImageFeatures {
  torch::Tensor global;  // [b, Dg]: ViT: final-norm [CLS]; ResNet: avgpool(layer4)
  torch::Tensor local;   // [b, P, Dl]: ViT: final-norm patch tokens; ResNet: layer3, row-major (h, w)
  // [b, P]: ViT: the last block's [CLS]→patch attention probabilities averaged
  // over heads (computed without gradient, as MGCA uses them only as weights).
  // Undefined for ResNet (CTA then uses uniform weights 1/P).
  torch::Tensor patch_attention;
};

class ImageEncoderImpl : public torch::nn::Module {
 public:
  virtual ImageFeatures forward(const torch::Tensor& images) = 0;
  virtual int64_t global_dim() const = 0;
  virtual int64_t local_dim() const = 0;
  // P for square inputs of `image_size` pixels (before any internal resize).
  virtual int64_t num_patches(int64_t image_size) const = 0;
  virtual bool has_patch_attention() const = 0;
};

// The first layer's weight for `in_channels` input channels: the 3-channel
// weight itself, or its sum over input channels for gray input. Differentiable
// (the gradient reaches the stored 3-channel weight).
torch::Tensor fold_input_channels(const torch::Tensor& weight, int64_t in_channels);

}  // namespace mgca::model
