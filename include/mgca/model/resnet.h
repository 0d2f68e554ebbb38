// ResNet with torchvision's parameter names (conv1, bn1, layer1..4.i.{conv1,
// bn1, conv2, bn2, conv3, bn3, downsample.0, downsample.1}), so torchvision's
// resnet50 checkpoint loads name for name (its fc.* is skipped).
//
// forward(images [b, C∈{1,3}, H, W]):
//   when config.input_size > 0 the images are first resized bilinearly
//   (align_corners=true, as MGCA: 224 → 299); then
//   global [b, 2048] = avgpool(layer4), local [b, P, 1024] = layer3 with the
//   spatial positions flattened row-major (P = 19·19 = 361 at 299).
//
// BatchNorm layers are comm::SyncBatchNorm: with a communicator of size > 1
// (set_communicator) their training statistics cover the global batch, every
// rank must then run forward/backward in lock step; with none they are plain
// BatchNorm.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>

#include <memory>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/comm/sync_batchnorm.h"
#include "mgca/model/config.h"
#include "mgca/model/image_encoder.h"

namespace mgca::model {

class BottleneckImpl : public torch::nn::Module {
 public:
  BottleneckImpl(int64_t in_channels, int64_t width, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr}, down_conv{nullptr};
  comm::SyncBatchNorm bn1{nullptr}, bn2{nullptr}, bn3{nullptr}, down_bn{nullptr};

 private:
  int64_t stride_;
};
TORCH_MODULE(Bottleneck);

class ResNetImpl : public ImageEncoderImpl {
 public:
  explicit ResNetImpl(const ResNetConfig& config);
  ImageFeatures forward(const torch::Tensor& images) override;
  int64_t global_dim() const override { return config_.global_dim(); }
  int64_t local_dim() const override { return config_.local_dim(); }
  int64_t num_patches(int64_t image_size) const override;
  bool has_patch_attention() const override { return false; }
  const ResNetConfig& config() const { return config_; }

  // Every BatchNorm layer's communicator (nullptr: per-process statistics).
  void set_communicator(const std::shared_ptr<comm::Communicator>& comm);
  void reset_parameters();  // torchvision's init: kaiming_normal(fan_out) convs, BN 1/0

  torch::nn::Conv2d conv1{nullptr};
  comm::SyncBatchNorm bn1{nullptr};
  std::vector<torch::nn::ModuleList> layers;  // layer1..layer4

 private:
  ResNetConfig config_;
};
TORCH_MODULE(ResNet);

}  // namespace mgca::model
