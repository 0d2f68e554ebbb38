#include "mgca/eval/downstream.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mgca/model/vit.h"
#include "mgca/util/error.h"
#include "mgca/util/rng.h"

namespace mgca::eval {

std::vector<torch::Tensor> resnet_pyramid(model::ResNetImpl& resnet, const torch::Tensor& images) {
  const auto weight = model::fold_input_channels(resnet.conv1->weight, images.size(1));
  auto x = resnet.bn1->forward(at::conv2d(images, weight, {}, 2, 3)).relu_();
  std::vector<torch::Tensor> features{x};
  x = at::max_pool2d(x, 3, 2, 1);
  for (auto& layer : resnet.layers) {
    for (size_t i = 0; i < layer->size(); ++i) x = layer->ptr<model::BottleneckImpl>(i)->forward(x);
    features.push_back(x);
  }
  return features;
}

int64_t downstream_input_size(const model::ImageEncoderImpl& encoder, int64_t requested) {
  if (requested > 0) return requested;
  if (const auto* vit = dynamic_cast<const model::ViTImpl*>(&encoder)) return vit->config().image_size;
  return 224;
}

torch::Tensor normalise_downstream_images(const torch::Tensor& images_uint8) {
  return (images_uint8.to(torch::kFloat32) / 255.0 - 0.5) / 0.5;
}

std::vector<int64_t> all_rows(int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

std::vector<int64_t> rank_share(const std::vector<int64_t>& rows, int rank, int size) {
  const size_t n = rows.size();
  return {rows.begin() + static_cast<std::ptrdiff_t>(n * static_cast<size_t>(rank) / static_cast<size_t>(size)),
          rows.begin() + static_cast<std::ptrdiff_t>(n * static_cast<size_t>(rank + 1) / static_cast<size_t>(size))};
}

std::vector<int64_t> fraction_rows(int64_t n, double fraction, uint64_t seed) {
  MGCA_CHECK(fraction > 0 && fraction <= 1, "label fraction {} is not in (0, 1]", fraction);
  const auto order = util::permutation(n, util::make_key({seed, 0x5e6u, static_cast<uint64_t>(std::llround(fraction * 1e6))}));
  const int64_t keep =
      fraction >= 1 ? n : std::max<int64_t>(1, static_cast<int64_t>(std::floor(fraction * static_cast<double>(n))));
  std::vector<int64_t> rows(order.begin(), order.begin() + keep);
  std::sort(rows.begin(), rows.end());
  return rows;
}

}  // namespace mgca::eval
