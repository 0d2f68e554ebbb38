// Object detection on a frozen image encoder, MGCA's downstream protocol
// (docs/evaluation.md, "Detection"): the YOLOv3 head of its ssl_detector.py,
// the loss and target assignment of its yolo_loss.py, the decoding and
// non-maximum suppression of detection_utils.py. Our own code, the
// reference's constants and rules (quirks included, each named below).
//
// One class (the datasets' findings are one kind of box). Boxes are pixels of
// the square model input, (x0, y0, x1, y1).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <array>
#include <memory>
#include <vector>

#include "mgca/eval/downstream.h"
#include "mgca/eval/localization_metrics.h"
#include "mgca/io/dataset_file.h"
#include "mgca/model/image_encoder.h"

namespace mgca::eval {

struct YoloConstants {
  double lambda_xy = 2.5, lambda_wh = 2.5, lambda_conf = 1.0, lambda_cls = 1.0;  // YOLOLoss
  double ignore_threshold = 0.5;  // YOLOLoss: anchors above it are no "no-object" cells
  double conf_threshold = 0.5;    // SSLDetector conf_thres
  double nms_threshold = 0.5;     // SSLDetector nms_thres
};

constexpr int64_t kYoloScales = 3;
constexpr int64_t kYoloAnchorsPerScale = 3;
constexpr int64_t kYoloAttributes = 6;  // x, y, w, h, objectness, one class

// An anchor's (width, height) in input pixels.
using Anchor = std::array<double, 2>;
// ModelMain's anchors, YOLOv3's at 416 px scaled by input_size / 416 (MGCA:
// 224 / 416). Scale 0 is the coarsest (stride 32: the largest anchors),
// scale 2 the finest (stride 8).
std::vector<std::vector<Anchor>> yolo_anchors(int64_t input_size);

// get_target of yolo_loss.py for one scale of an [h, w] grid: tensors
// [b, A, h, w]. Per box (in order, a later box overwriting an earlier one in
// the same cell): the cell (floor(cx·w/S), floor(cy·h/S)); the IoU of the
// box's and every anchor's (width, height) in grid units with MGCA's +1
// convention (nms_iou on boxes at the origin); the cell's anchors above
// ignore_threshold leave noobj; the best anchor (first of equals) gets
// mask 1, tx/ty the offset in the cell, tw/th log(size / anchor + 1e-16).
// As in MGCA the best anchor stays in noobj when its IoU is not above the
// threshold.
struct YoloTargets {
  torch::Tensor mask, noobj, tx, ty, tw, th;
};
YoloTargets yolo_targets(const std::vector<std::vector<io::Box>>& boxes, const std::vector<Anchor>& anchors,
                         int64_t grid_h, int64_t grid_w, int64_t input_size, double ignore_threshold);

// YOLOLoss.forward with targets, summed over the scales as SSLDetector does:
// raw head outputs [b, A·6, h, w] per scale (coarsest first) →
// Σ_scales λxy(BCE(σx·m, tx·m) + BCE(σy·m, ty·m)) + λwh(MSE(w·m, tw·m) +
// MSE(h·m, th·m)) + BCE(σc·m, m) + ½ BCE(σc·noobj, 0) + BCE(σcls·m, m),
// every term a mean over the scale's [b, A, h, w] cells.
torch::Tensor yolo_loss(const std::vector<torch::Tensor>& outputs, const std::vector<std::vector<io::Box>>& boxes,
                        int64_t input_size, const YoloConstants& constants = {});

// YOLOLoss.forward without targets: [b, Σ A·h·w, 6] rows (cx, cy, w, h in
// input pixels, σ objectness, σ class), scales in order, then anchor-major,
// then row-major cells.
torch::Tensor yolo_decode(const std::vector<torch::Tensor>& outputs, int64_t input_size);

// non_max_suppression of detection_utils.py for one class, per image of a
// decoded [b, N, 6]: rows with objectness ≥ conf_threshold, by descending
// objectness (stable), greedily kept, dropping later rows whose nms_iou with
// a kept one is ≥ nms_threshold. Scores are the objectness.
std::vector<std::vector<ScoredBox>> yolo_nms(const torch::Tensor& decoded, const YoloConstants& constants = {});

// ModelMain: three YOLOv3 embeddings (five conv–BN–LeakyReLU(0.1) layers of
// 1×1/3×3 alternating widths [512, 1024], [256, 512], [128, 256], a sixth
// 3×3 layer and a 1×1 output conv to A·6 channels), the second and third fed
// with the previous branch's fifth layer through conv 1×1 (256, 128), nearest
// ×2 and concatenation with the next finer backbone feature.
// Backbone features at strides 32, 16, 8:
//  * ResNet: layer4, layer3, layer2 (MGCA's ResNetDetector);
//  * ViT (MGCA has no ViT detector): the final-norm patch tokens on their
//    grid, max-pooled or nearest-upsampled to each stride (ViTDet's simple
//    feature pyramid, with pooling and upsampling instead of learned convs),
//    so the same head applies.
// The encoder is frozen and kept in eval mode (FrozenEncoderNet).
class DetectionNetImpl : public FrozenEncoderNet {
 public:
  explicit DetectionNetImpl(std::shared_ptr<model::ImageEncoderImpl> encoder);
  // images [b, 1|3, S, S], S a multiple of 32 → raw outputs per scale,
  // coarsest first: [b, 18, S/32, S/32], [b, 18, S/16, S/16], [b, 18, S/8, S/8].
  std::vector<torch::Tensor> forward(const torch::Tensor& images);

 private:
  std::vector<torch::Tensor> backbone(const torch::Tensor& images);  // strides 32, 16, 8

  bool is_resnet_ = false;
  int64_t patch_ = 0;
  std::vector<torch::nn::Sequential> embeddings_;  // the first five conv–BN–LeakyReLU layers
  std::vector<torch::nn::Sequential> outputs_;     // the sixth, then the 1×1 conv to A·6
  std::vector<torch::nn::Sequential> laterals_;    // conv 1×1 before upsampling (branches 1, 2)
};
TORCH_MODULE(DetectionNet);

}  // namespace mgca::eval
