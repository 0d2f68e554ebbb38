// Semantic segmentation on a frozen image encoder, as MGCA's downstream
// protocol (docs/evaluation.md, "Segmentation"): a decoder trained with
// focal + Dice loss on 1/10/100 % of the training masks, scored by the
// per-image Dice of localization_metrics.h.
//
// Decoders:
//  * ResNet: the U-Net of segmentation_models_pytorch (smp.Unet("resnet50"),
//    what MGCA trains): encoder features stem (/2), layer1..layer4 (/4../32);
//    five decoder blocks of 256, 128, 64, 32, 16 channels, each nearest ×2
//    upsampling, concatenation of the skip feature (none in the last block),
//    then twice conv 3×3 (no bias) – BatchNorm – ReLU; a 3×3 conv head to one
//    logit per pixel.
//  * ViT: MGCA's SETR decoder (transformer_seg.py) on the final-norm patch
//    tokens: a Linear D → D per token, the tokens laid out on their grid,
//    then per stage conv 3×3 – BatchNorm – ReLU – bilinear ×2
//    (align_corners) with 512, 256, 128, 64 channels, and a 3×3 conv head.
//    MGCA's 16-px patches need four ×2 stages; a patch of p pixels gets
//    log2(p) stages (the first log2(p) widths), so the output is the input size.
//    A ViT has no multi-scale features for U-Net skips, which is why MGCA
//    upsamples its tokens instead.
// The encoder is frozen and kept in eval mode (MGCA freezes its parameters
// but leaves the module in train mode, so its BatchNorm statistics drift
// with the downstream data; ours do not).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <memory>
#include <vector>

#include "mgca/eval/downstream.h"
#include "mgca/model/image_encoder.h"

namespace mgca::eval {

// MGCA's MixedLoss(alpha = 10) (segmentation_loss.py) on logits and 0/1
// targets of the same shape: alpha · focal(gamma = 2, mean over pixels)
// − log((2 Σ σ(x)·t + 1) / (Σ σ(x) + Σ t + 1)) over the whole batch.
torch::Tensor mixed_segmentation_loss(const torch::Tensor& logits, const torch::Tensor& targets,
                                      double alpha = 10.0, double gamma = 2.0);

// head_parameters() are the decoder's.
class SegmentationNetImpl : public FrozenEncoderNet {
 public:
  // `encoder` (ViT or ResNet) is frozen (FrozenEncoderNet).
  explicit SegmentationNetImpl(std::shared_ptr<model::ImageEncoderImpl> encoder);
  // images [b, 1|3, S, S] normalised as the encoder expects → logits [b, S, S].
  // S must be a multiple of 32 (ResNet) or the patch size (ViT).
  torch::Tensor forward(const torch::Tensor& images);

 private:
  torch::Tensor resnet_forward(const torch::Tensor& images);
  torch::Tensor vit_forward(const torch::Tensor& images);

  bool is_resnet_ = false;
  int64_t patch_ = 0;
  std::vector<torch::nn::Sequential> blocks_;  // U-Net blocks or SETR stages
  torch::nn::Linear token_dense_{nullptr};     // SETR only
  torch::nn::Conv2d head_{nullptr};
};
TORCH_MODULE(SegmentationNet);

}  // namespace mgca::eval
