#include "mgca/eval/detection.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mgca/eval/downstream.h"
#include "mgca/model/resnet.h"
#include "mgca/model/vit.h"
#include "mgca/util/error.h"

namespace mgca::eval {
namespace {

constexpr std::array<int64_t, kYoloScales> kStrides = {32, 16, 8};

// Anchor sizes in grid units of a scale (YOLOLoss's scaled_anchors).
std::vector<Anchor> grid_anchors(const std::vector<Anchor>& anchors, double stride_w, double stride_h) {
  std::vector<Anchor> out;
  for (const auto& a : anchors) out.push_back({a[0] / stride_w, a[1] / stride_h});
  return out;
}

// [b, A·6, h, w] → [b, A, h, w, 6].
torch::Tensor by_attribute(const torch::Tensor& output) {
  MGCA_CHECK(output.dim() == 4 && output.size(1) == kYoloAnchorsPerScale * kYoloAttributes,
             "detection: head output must be [b, {}, h, w], got {}", kYoloAnchorsPerScale * kYoloAttributes,
             c10::str(output.sizes()));
  return output.view({output.size(0), kYoloAnchorsPerScale, kYoloAttributes, output.size(2), output.size(3)})
      .permute({0, 1, 3, 4, 2});
}

// conv k×k (no bias) – BatchNorm – LeakyReLU(0.1): ModelMain's _make_cbl.
void add_cbl(torch::nn::Sequential& seq, int64_t in, int64_t out, int64_t kernel) {
  seq->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).padding((kernel - 1) / 2).bias(false)));
  seq->push_back(torch::nn::BatchNorm2d(out));
  seq->push_back(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.1)));
}

}  // namespace

std::vector<std::vector<Anchor>> yolo_anchors(int64_t input_size) {
  // YOLOv3's COCO anchors at 416 px, coarsest scale first (ModelMain).
  const std::vector<std::vector<Anchor>> at416 = {
      {{116, 90}, {156, 198}, {373, 326}}, {{30, 61}, {62, 45}, {59, 119}}, {{10, 13}, {16, 30}, {33, 23}}};
  auto out = at416;
  for (auto& scale : out) {
    for (auto& a : scale) {
      a[0] *= static_cast<double>(input_size) / 416.0;
      a[1] *= static_cast<double>(input_size) / 416.0;
    }
  }
  return out;
}

YoloTargets yolo_targets(const std::vector<std::vector<io::Box>>& boxes, const std::vector<Anchor>& anchors,
                         int64_t grid_h, int64_t grid_w, int64_t input_size, double ignore_threshold) {
  const auto b = static_cast<int64_t>(boxes.size()), A = static_cast<int64_t>(anchors.size());
  const auto options = torch::TensorOptions(torch::kFloat32);
  YoloTargets t{torch::zeros({b, A, grid_h, grid_w}, options), torch::ones({b, A, grid_h, grid_w}, options),
                torch::zeros({b, A, grid_h, grid_w}, options), torch::zeros({b, A, grid_h, grid_w}, options),
                torch::zeros({b, A, grid_h, grid_w}, options), torch::zeros({b, A, grid_h, grid_w}, options)};
  auto mask = t.mask.accessor<float, 4>(), noobj = t.noobj.accessor<float, 4>(), tx = t.tx.accessor<float, 4>(),
       ty = t.ty.accessor<float, 4>(), tw = t.tw.accessor<float, 4>(), th = t.th.accessor<float, 4>();
  const double S = static_cast<double>(input_size);
  for (int64_t i = 0; i < b; ++i) {
    for (const auto& box : boxes[static_cast<size_t>(i)]) {
      // MGCA's labels are (cx, cy, w, h) / image size; times the grid.
      const double gx = (box.x0 + box.x1) / 2.0 / S * static_cast<double>(grid_w);
      const double gy = (box.y0 + box.y1) / 2.0 / S * static_cast<double>(grid_h);
      const double gw = (box.x1 - box.x0) / S * static_cast<double>(grid_w);
      const double gh = (box.y1 - box.y0) / S * static_cast<double>(grid_h);
      // int(gx); a centre on the far edge (only a degenerate box) stays in the last cell.
      const int64_t gi = std::min<int64_t>(static_cast<int64_t>(gx), grid_w - 1);
      const int64_t gj = std::min<int64_t>(static_cast<int64_t>(gy), grid_h - 1);
      int64_t best = 0;
      double best_iou = -1;
      for (int64_t a = 0; a < A; ++a) {
        const auto& anchor = anchors[static_cast<size_t>(a)];
        const double iou = nms_iou({0, 0, static_cast<float>(gw), static_cast<float>(gh)},
                                   {0, 0, static_cast<float>(anchor[0]), static_cast<float>(anchor[1])});
        if (iou > ignore_threshold) noobj[i][a][gj][gi] = 0;
        if (iou > best_iou) best_iou = iou, best = a;
      }
      mask[i][best][gj][gi] = 1;
      tx[i][best][gj][gi] = static_cast<float>(gx - static_cast<double>(gi));
      ty[i][best][gj][gi] = static_cast<float>(gy - static_cast<double>(gj));
      tw[i][best][gj][gi] = static_cast<float>(std::log(gw / anchors[static_cast<size_t>(best)][0] + 1e-16));
      th[i][best][gj][gi] = static_cast<float>(std::log(gh / anchors[static_cast<size_t>(best)][1] + 1e-16));
    }
  }
  return t;
}

torch::Tensor yolo_loss(const std::vector<torch::Tensor>& outputs, const std::vector<std::vector<io::Box>>& boxes,
                        int64_t input_size, const YoloConstants& c) {
  MGCA_CHECK(static_cast<int64_t>(outputs.size()) == kYoloScales, "detection: {} head outputs, expected {}",
             outputs.size(), kYoloScales);
  const auto anchors = yolo_anchors(input_size);
  torch::Tensor total;
  for (size_t k = 0; k < outputs.size(); ++k) {
    const auto p = by_attribute(outputs[k]);
    MGCA_CHECK(p.size(0) == static_cast<int64_t>(boxes.size()), "detection: {} images but {} box lists",
               p.size(0), boxes.size());
    const int64_t h = p.size(2), w = p.size(3);
    const double stride_w = static_cast<double>(input_size) / static_cast<double>(w);
    const double stride_h = static_cast<double>(input_size) / static_cast<double>(h);
    auto t = yolo_targets(boxes, grid_anchors(anchors[k], stride_w, stride_h), h, w, input_size, c.ignore_threshold);
    const auto like = [&](const torch::Tensor& x) { return x.to(p.device(), p.scalar_type()); };
    const auto m = like(t.mask), noobj = like(t.noobj);
    const auto x = p.select(4, 0).sigmoid(), y = p.select(4, 1).sigmoid(), pw = p.select(4, 2), ph = p.select(4, 3);
    const auto conf = p.select(4, 4).sigmoid(), cls = p.select(4, 5).sigmoid();
    const auto bce = [](const torch::Tensor& in, const torch::Tensor& target) {
      return torch::binary_cross_entropy(in, target);  // nn.BCELoss: mean, log clamped at −100
    };
    const auto loss = c.lambda_xy * (bce(x * m, like(t.tx) * m) + bce(y * m, like(t.ty) * m)) +
                      c.lambda_wh * (torch::mse_loss(pw * m, like(t.tw) * m) + torch::mse_loss(ph * m, like(t.th) * m)) +
                      c.lambda_conf * (bce(conf * m, m) + 0.5 * bce(conf * noobj, torch::zeros_like(noobj))) +
                      c.lambda_cls * bce(cls * m, m);
    total = total.defined() ? total + loss : loss;
  }
  return total;
}

torch::Tensor yolo_decode(const std::vector<torch::Tensor>& outputs, int64_t input_size) {
  const auto anchors = yolo_anchors(input_size);
  std::vector<torch::Tensor> rows;
  for (size_t k = 0; k < outputs.size(); ++k) {
    const auto p = by_attribute(outputs[k]).detach();
    const int64_t h = p.size(2), w = p.size(3);
    const double stride_w = static_cast<double>(input_size) / static_cast<double>(w);
    const double stride_h = static_cast<double>(input_size) / static_cast<double>(h);
    const auto scaled = grid_anchors(anchors[k], stride_w, stride_h);
    std::vector<double> aw, ah;
    for (const auto& a : scaled) aw.push_back(a[0]), ah.push_back(a[1]);
    const auto opts = p.options();
    const auto grid_x = torch::arange(w, opts).view({1, 1, 1, w});
    const auto grid_y = torch::arange(h, opts).view({1, 1, h, 1});
    const auto anchor_w = torch::tensor(aw, torch::kFloat64).to(opts).view({1, -1, 1, 1});
    const auto anchor_h = torch::tensor(ah, torch::kFloat64).to(opts).view({1, -1, 1, 1});
    const auto cx = (p.select(4, 0).sigmoid() + grid_x) * stride_w;
    const auto cy = (p.select(4, 1).sigmoid() + grid_y) * stride_h;
    const auto bw = p.select(4, 2).exp() * anchor_w * stride_w;
    const auto bh = p.select(4, 3).exp() * anchor_h * stride_h;
    rows.push_back(torch::stack({cx, cy, bw, bh, p.select(4, 4).sigmoid(), p.select(4, 5).sigmoid()}, 4)
                       .reshape({p.size(0), -1, kYoloAttributes}));
  }
  return torch::cat(rows, 1);
}

std::vector<std::vector<ScoredBox>> yolo_nms(const torch::Tensor& decoded, const YoloConstants& c) {
  MGCA_CHECK(decoded.dim() == 3 && decoded.size(2) == kYoloAttributes, "detection: decoded rows must be [b, N, {}]",
             kYoloAttributes);
  const auto rows = decoded.to(torch::kCPU, torch::kFloat64).contiguous();
  const auto r = rows.accessor<double, 3>();
  std::vector<std::vector<ScoredBox>> out(static_cast<size_t>(rows.size(0)));
  for (int64_t i = 0; i < rows.size(0); ++i) {
    std::vector<ScoredBox> candidates;
    for (int64_t n = 0; n < rows.size(1); ++n) {
      if (!(r[i][n][4] >= c.conf_threshold)) continue;
      const double cx = r[i][n][0], cy = r[i][n][1], w = r[i][n][2], h = r[i][n][3];
      candidates.push_back({{static_cast<float>(cx - w / 2), static_cast<float>(cy - h / 2),
                             static_cast<float>(cx + w / 2), static_cast<float>(cy + h / 2)},
                            r[i][n][4]});
    }
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const ScoredBox& a, const ScoredBox& b) { return a.score > b.score; });
    auto& kept = out[static_cast<size_t>(i)];
    std::vector<char> removed(candidates.size(), 0);
    for (size_t a = 0; a < candidates.size(); ++a) {
      if (removed[a]) continue;
      kept.push_back(candidates[a]);
      for (size_t b = a + 1; b < candidates.size(); ++b) {
        if (!removed[b] && nms_iou(candidates[a].box, candidates[b].box) >= c.nms_threshold) removed[b] = 1;
      }
    }
  }
  return out;
}

DetectionNetImpl::DetectionNetImpl(std::shared_ptr<model::ImageEncoderImpl> encoder)
    : FrozenEncoderNet(std::move(encoder), "detection") {
  std::array<int64_t, kYoloScales> channels{};
  if (auto* resnet = dynamic_cast<model::ResNetImpl*>(encoder_.get())) {
    is_resnet_ = true;
    torch::NoGradGuard no_grad;
    const auto features = resnet_pyramid(*resnet, torch::zeros({1, 1, 64, 64}));
    channels = {features[4].size(1), features[3].size(1), features[2].size(1)};
  } else {
    auto* vit = dynamic_cast<model::ViTImpl*>(encoder_.get());
    MGCA_CHECK(vit != nullptr, "detection: the encoder is neither a ViT nor a ResNet");
    patch_ = vit->config().patch_size;
    MGCA_CHECK(patch_ >= 1 && (patch_ & (patch_ - 1)) == 0 && patch_ <= 32,
               "detection: ViT patch size {} must be a power of two up to 32", patch_);
    channels = {vit->local_dim(), vit->local_dim(), vit->local_dim()};
  }
  const std::array<std::array<int64_t, 2>, kYoloScales> widths = {{{512, 1024}, {256, 512}, {128, 256}}};
  const std::array<int64_t, 2> lateral = {256, 128};
  for (int64_t k = 0; k < kYoloScales; ++k) {
    const auto [narrow, wide] = widths[static_cast<size_t>(k)];
    const int64_t in = channels[static_cast<size_t>(k)] + (k > 0 ? lateral[static_cast<size_t>(k - 1)] : 0);
    torch::nn::Sequential embedding;
    add_cbl(embedding, in, narrow, 1);
    add_cbl(embedding, narrow, wide, 3);
    add_cbl(embedding, wide, narrow, 1);
    add_cbl(embedding, narrow, wide, 3);
    add_cbl(embedding, wide, narrow, 1);
    embeddings_.push_back(register_module("embedding" + std::to_string(k), embedding));
    torch::nn::Sequential tail;
    add_cbl(tail, narrow, wide, 3);
    tail->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(wide, kYoloAnchorsPerScale * kYoloAttributes, 1)));
    outputs_.push_back(register_module("output" + std::to_string(k), tail));
    if (k + 1 < kYoloScales) {
      torch::nn::Sequential cbl;
      add_cbl(cbl, narrow, lateral[static_cast<size_t>(k)], 1);
      laterals_.push_back(register_module("lateral" + std::to_string(k + 1), cbl));
    }
  }
}

std::vector<torch::Tensor> DetectionNetImpl::backbone(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  if (is_resnet_) {
    const auto f = resnet_pyramid(*static_cast<model::ResNetImpl*>(encoder_.get()), images);
    return {f[4], f[3], f[2]};
  }
  const int64_t grid = images.size(2) / patch_;
  MGCA_CHECK(grid * patch_ == images.size(2), "detection: ViT input size {} is not a multiple of the patch {}",
             images.size(2), patch_);
  const auto tokens = encoder_->forward(images).local;  // [b, P, D]
  const auto map = tokens.transpose(1, 2).reshape({tokens.size(0), tokens.size(2), grid, grid});
  std::vector<torch::Tensor> out;
  for (const int64_t stride : kStrides) {
    if (stride > patch_) {
      out.push_back(at::max_pool2d(map, stride / patch_, stride / patch_));
    } else if (stride < patch_) {
      out.push_back(at::upsample_nearest2d(map, {grid * (patch_ / stride), grid * (patch_ / stride)}));
    } else {
      out.push_back(map);
    }
  }
  return out;
}

std::vector<torch::Tensor> DetectionNetImpl::forward(const torch::Tensor& images) {
  MGCA_CHECK(images.dim() == 4 && images.size(2) == images.size(3) && images.size(2) % 32 == 0,
             "detection: images must be [b, C, S, S] with S a multiple of 32, got {}", c10::str(images.sizes()));
  const auto features = backbone(images);
  std::vector<torch::Tensor> outputs;
  torch::Tensor branch;
  for (size_t k = 0; k < embeddings_.size(); ++k) {
    auto x = features[k];
    if (k > 0) {
      auto lateral = laterals_[k - 1]->forward(branch);
      lateral = at::upsample_nearest2d(lateral, {lateral.size(2) * 2, lateral.size(3) * 2});
      x = torch::cat({lateral, x}, 1);
    }
    // The fifth layer's output feeds the next scale (ModelMain's out_branch).
    branch = embeddings_[k]->forward(x);
    outputs.push_back(outputs_[k]->forward(branch));
  }
  return outputs;
}

}  // namespace mgca::eval
