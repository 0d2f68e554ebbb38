#include "mgca/model/resnet.h"

#include <torch/torch.h>

#include "format.h"
#include "mgca/comm/exact_grad.h"
#include "mgca/util/error.h"

namespace mgca::model {

namespace {

// A bias-free convolution; its weight gradient is exact under
// runtime.batch_invariant (comm/exact_grad.h).
torch::Tensor resnet_conv2d(const torch::Tensor& x, const torch::Tensor& weight, int64_t stride = 1,
                            int64_t padding = 0) {
  return comm::exact_op(
      [stride, padding](const std::vector<torch::Tensor>& in, const std::vector<torch::Tensor>& w) {
        return at::conv2d(in[0], w[0], {}, stride, padding);
      },
      {x}, {weight});
}

namespace nn = torch::nn;

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

comm::SyncBatchNorm batch_norm(int64_t channels) {
  comm::SyncBatchNormOptions options;
  options.num_features = channels;
  return comm::SyncBatchNorm(options);
}

// Output size of a k×k convolution / pooling with stride s and padding p.
int64_t conv_out(int64_t size, int64_t k, int64_t s, int64_t p) { return (size + 2 * p - k) / s + 1; }

}  // namespace

BottleneckImpl::BottleneckImpl(int64_t in_channels, int64_t width, int64_t stride) : stride_(stride) {
  const int64_t out_channels = width * 4;
  conv1 = register_module("conv1", conv(in_channels, width, 1, 1, 0));
  bn1 = register_module("bn1", batch_norm(width));
  conv2 = register_module("conv2", conv(width, width, 3, stride, 1));
  bn2 = register_module("bn2", batch_norm(width));
  conv3 = register_module("conv3", conv(width, out_channels, 1, 1, 0));
  bn3 = register_module("bn3", batch_norm(out_channels));
  if (stride != 1 || in_channels != out_channels) {
    auto down = register_module("downsample", std::make_shared<nn::Module>("Downsample"));
    down_conv = down->register_module("0", conv(in_channels, out_channels, 1, stride, 0));
    down_bn = down->register_module("1", batch_norm(out_channels));
  }
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  auto h = bn1->forward(resnet_conv2d(x, conv1->weight)).relu_();
  h = bn2->forward(resnet_conv2d(h, conv2->weight, stride_, 1)).relu_();
  h = bn3->forward(resnet_conv2d(h, conv3->weight));
  const auto identity =
      down_conv ? down_bn->forward(resnet_conv2d(x, down_conv->weight, stride_)) : x;
  return h.add_(identity).relu_();
}

int64_t ResNetConfig::num_patches(int64_t size) const {
  if (input_size > 0) size = input_size;
  size = conv_out(size, 7, 2, 3);  // conv1
  size = conv_out(size, 3, 2, 1);  // maxpool
  size = conv_out(size, 3, 2, 1);  // layer2
  size = conv_out(size, 3, 2, 1);  // layer3
  return size * size;
}

ResNetImpl::ResNetImpl(const ResNetConfig& c) : config_(c) {
  conv1 = register_module("conv1", conv(3, c.width, 7, 2, 3));
  bn1 = register_module("bn1", batch_norm(c.width));
  int64_t in_channels = c.width;
  for (int stage = 0; stage < 4; ++stage) {
    MGCA_CHECK(c.layers[stage] >= 1, "ResNet: stage {} needs at least one block", stage + 1);
    const int64_t width = c.width << stage;
    auto list = register_module("layer" + std::to_string(stage + 1), nn::ModuleList());
    for (int64_t i = 0; i < c.layers[stage]; ++i) {
      const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
      list->push_back(Bottleneck(in_channels, width, stride));
      in_channels = width * 4;
    }
    layers.push_back(list);
  }
  reset_parameters();
}

void ResNetImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* c = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = module->as<comm::SyncBatchNorm>()) {
      if (bn->weight.defined()) {
        bn->weight.fill_(1.0);
        bn->bias.zero_();
      }
    }
  }
}

void ResNetImpl::set_communicator(const std::shared_ptr<comm::Communicator>& comm) {
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* bn = module->as<comm::SyncBatchNorm>()) bn->set_communicator(comm);
  }
}

int64_t ResNetImpl::num_patches(int64_t image_size) const { return config_.num_patches(image_size); }

ImageFeatures ResNetImpl::forward(const torch::Tensor& images) {
  const auto& c = config_;
  MGCA_CHECK(images.dim() == 4, "ResNet: images must be [b, 1|3, H, W], got {}", detail::dims(images.sizes()));
  auto x = images;
  if (c.input_size > 0 && (x.size(2) != c.input_size || x.size(3) != c.input_size)) {
    // Resizing the gray image before the channel fold is 3× cheaper than resizing RGB.
    x = at::upsample_bilinear2d(x, {c.input_size, c.input_size}, /*align_corners=*/true);
  }
  if (c.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t channels = x.size(1);
  x = comm::exact_op(
      [channels](const std::vector<torch::Tensor>& in, const std::vector<torch::Tensor>& w) {
        return at::conv2d(in[0], fold_input_channels(w[0], channels), {}, 2, 3);
      },
      {x}, {conv1->weight});
  x = bn1->forward(x).relu_();
  x = at::max_pool2d(x, 3, 2, 1);
  ImageFeatures out;
  for (size_t stage = 0; stage < layers.size(); ++stage) {
    for (size_t i = 0; i < layers[stage]->size(); ++i) x = layers[stage]->ptr<BottleneckImpl>(i)->forward(x);
    if (stage == 2) out.local = x.flatten(2).transpose(1, 2);  // [b, P, C]; a view when channels-last
  }
  out.global = x.mean({2, 3});
  return out;
}

}  // namespace mgca::model
