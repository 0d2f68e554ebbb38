#include "mgca/eval/segmentation.h"

#include <torch/torch.h>

#include <cmath>

#include "mgca/eval/downstream.h"
#include "mgca/model/resnet.h"
#include "mgca/model/vit.h"
#include "mgca/util/error.h"

namespace mgca::eval {
namespace {

// Appends conv 3×3 – BatchNorm – ReLU.
void add_conv_bn_relu(torch::nn::Sequential& block, int64_t in, int64_t out, bool bias) {
  block->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(bias)));
  block->push_back(torch::nn::BatchNorm2d(out));
  block->push_back(torch::nn::ReLU(true));
}

}  // namespace

torch::Tensor mixed_segmentation_loss(const torch::Tensor& logits, const torch::Tensor& targets, double alpha,
                                      double gamma) {
  MGCA_CHECK(logits.sizes() == targets.sizes(), "segmentation loss: logits {} and targets {} differ in shape",
             c10::str(logits.sizes()), c10::str(targets.sizes()));
  const auto t = targets.to(logits.dtype());
  // Binary cross-entropy with logits, written as MGCA's FocalLoss writes it.
  const auto max_val = (-logits).clamp_min(0);
  auto bce = logits - logits * t + max_val + ((-max_val).exp() + (-logits - max_val).exp()).log();
  const auto focal = (at::log_sigmoid(-logits * (t * 2.0 - 1.0)) * gamma).exp() * bce;
  const auto p = logits.sigmoid().reshape(-1);
  const auto dice = (2.0 * (p * t.reshape(-1)).sum() + 1.0) / (p.sum() + t.sum() + 1.0);
  return alpha * focal.mean() - dice.log();
}

SegmentationNetImpl::SegmentationNetImpl(std::shared_ptr<model::ImageEncoderImpl> encoder)
    : FrozenEncoderNet(std::move(encoder), "segmentation") {
  if (auto* resnet = dynamic_cast<model::ResNetImpl*>(encoder_.get())) {
    is_resnet_ = true;
    std::vector<int64_t> channels;
    {
      torch::NoGradGuard no_grad;
      for (const auto& f : resnet_pyramid(*resnet, torch::zeros({1, 1, 64, 64}))) channels.push_back(f.size(1));
    }
    // smp.Unet: head = layer4, skips layer3, layer2, layer1, stem, none.
    const std::vector<int64_t> out = {256, 128, 64, 32, 16};
    int64_t in = channels[4];
    for (size_t k = 0; k < out.size(); ++k) {
      const int64_t skip = k < 4 ? channels[3 - k] : 0;
      torch::nn::Sequential block;
      add_conv_bn_relu(block, in + skip, out[k], false);
      add_conv_bn_relu(block, out[k], out[k], false);
      blocks_.push_back(register_module("block" + std::to_string(k), block));
      in = out[k];
    }
    head_ = register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 1, 3).padding(1)));
    return;
  }
  auto* vit = dynamic_cast<model::ViTImpl*>(encoder_.get());
  MGCA_CHECK(vit != nullptr, "segmentation: the encoder is neither a ViT nor a ResNet");
  patch_ = vit->config().patch_size;
  const int64_t stages = static_cast<int64_t>(std::lround(std::log2(static_cast<double>(patch_))));
  MGCA_CHECK(stages >= 1 && stages <= 4 && (int64_t{1} << stages) == patch_,
             "segmentation: ViT patch size {} must be 2, 4, 8 or 16", patch_);
  const int64_t dim = vit->local_dim();
  token_dense_ = register_module("token_dense", torch::nn::Linear(dim, dim));
  const std::vector<int64_t> widths = {512, 256, 128, 64};
  int64_t in = dim;
  for (int64_t k = 0; k < stages; ++k) {
    torch::nn::Sequential stage;
    add_conv_bn_relu(stage, in, widths[static_cast<size_t>(k)], true);
    stage->push_back(torch::nn::Upsample(
        torch::nn::UpsampleOptions().scale_factor(std::vector<double>{2, 2}).mode(torch::kBilinear).align_corners(true)));
    blocks_.push_back(register_module("stage" + std::to_string(k), stage));
    in = widths[static_cast<size_t>(k)];
  }
  head_ = register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, 1, 3).padding(1)));
}

torch::Tensor SegmentationNetImpl::forward(const torch::Tensor& images) {
  MGCA_CHECK(images.dim() == 4 && images.size(2) == images.size(3),
             "segmentation: images must be [b, C, S, S], got {}", c10::str(images.sizes()));
  return (is_resnet_ ? resnet_forward(images) : vit_forward(images)).squeeze(1);
}

torch::Tensor SegmentationNetImpl::resnet_forward(const torch::Tensor& images) {
  MGCA_CHECK(images.size(2) % 32 == 0, "segmentation: ResNet input size {} is not a multiple of 32", images.size(2));
  std::vector<torch::Tensor> features;
  {
    torch::NoGradGuard no_grad;
    features = resnet_pyramid(*static_cast<model::ResNetImpl*>(encoder_.get()), images);
  }
  auto x = features[4];
  for (size_t k = 0; k < blocks_.size(); ++k) {
    x = at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2});
    if (k < 4) x = torch::cat({x, features[3 - k]}, 1);
    x = blocks_[k]->forward(x);
  }
  return head_->forward(x);
}

torch::Tensor SegmentationNetImpl::vit_forward(const torch::Tensor& images) {
  const int64_t grid = images.size(2) / patch_;
  MGCA_CHECK(grid * patch_ == images.size(2), "segmentation: ViT input size {} is not a multiple of the patch {}",
             images.size(2), patch_);
  torch::Tensor tokens;
  {
    torch::NoGradGuard no_grad;
    tokens = encoder_->forward(images).local;  // [b, P, D] final-norm patch tokens
  }
  auto x = token_dense_->forward(tokens);
  x = x.transpose(1, 2).reshape({x.size(0), x.size(2), grid, grid});
  for (auto& stage : blocks_) x = stage->forward(x);
  return head_->forward(x);
}

}  // namespace mgca::eval
