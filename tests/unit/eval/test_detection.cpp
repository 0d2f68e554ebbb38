// Detection head: MGCA's anchors, target assignment, decoding and NMS on
// hand-computed cases, the summed YOLO loss and its gradient against a
// step-by-step Python reimplementation of MGCA's YOLOLoss, and the head's
// shapes on both backbones with a frozen encoder.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "mgca/eval/detection.h"
#include "mgca/io/safetensors.h"
#include "mgca/model/resnet.h"
#include "mgca/model/vit.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::eval {
namespace {

TEST(YoloAnchors, AreYoloV3sScaledFrom416) {
  const auto a = yolo_anchors(224);
  ASSERT_EQ(a.size(), 3u);
  EXPECT_DOUBLE_EQ(a[0][0][0], 116.0 * 224 / 416);  // coarsest scale: largest anchors
  EXPECT_DOUBLE_EQ(a[0][2][1], 326.0 * 224 / 416);
  EXPECT_DOUBLE_EQ(a[2][0][0], 10.0 * 224 / 416);   // finest scale
  EXPECT_DOUBLE_EQ(yolo_anchors(416)[1][1][0], 62.0);
}

TEST(YoloTargets, HandComputedAssignment) {
  // 224 px, 7×7 grid (stride 32); box (80, 80)–(144, 176): centre (112, 128)
  // → cell (3, 4), offsets (0.5, 0); size 2 × 3 cells.
  const auto anchors = yolo_anchors(224)[0];
  std::vector<Anchor> grid;
  for (const auto& a : anchors) grid.push_back({a[0] / 32, a[1] / 32});
  const auto t = yolo_targets({{{80, 80, 144, 176}}}, grid, 7, 7, 224, 0.5);
  // +1 IoUs of (2, 3) with the anchors (1.952, 1.514), (2.625, 3.332), (6.276, 5.486):
  // 7.421/12.0 = 0.618, 12/15.70 = 0.764, 12/47.19 = 0.254 → best anchor 1.
  const auto iou = [](double w, double h, double aw, double ah) {
    const double inter = (std::min(w, aw) + 1) * (std::min(h, ah) + 1);
    return inter / ((w + 1) * (h + 1) + (aw + 1) * (ah + 1) - inter);
  };
  EXPECT_NEAR(iou(2, 3, grid[0][0], grid[0][1]), 0.618, 1e-3);
  EXPECT_NEAR(iou(2, 3, grid[1][0], grid[1][1]), 0.764, 1e-3);
  EXPECT_NEAR(iou(2, 3, grid[2][0], grid[2][1]), 0.254, 1e-3);
  EXPECT_EQ(t.mask.sum().item<float>(), 1.0f);
  EXPECT_EQ(t.mask[0][1][4][3].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(t.tx[0][1][4][3].item<float>(), 0.5f);
  EXPECT_FLOAT_EQ(t.ty[0][1][4][3].item<float>(), 0.0f);
  EXPECT_NEAR(t.tw[0][1][4][3].item<float>(), std::log(2.0 / grid[1][0]), 1e-6);
  EXPECT_NEAR(t.th[0][1][4][3].item<float>(), std::log(3.0 / grid[1][1]), 1e-6);
  // Anchors 0 and 1 (IoU > 0.5) leave noobj in that cell; anchor 2 stays.
  EXPECT_EQ(t.noobj[0][0][4][3].item<float>(), 0.0f);
  EXPECT_EQ(t.noobj[0][1][4][3].item<float>(), 0.0f);
  EXPECT_EQ(t.noobj[0][2][4][3].item<float>(), 1.0f);
  EXPECT_EQ(t.noobj.sum().item<float>(), 3 * 49 - 2);
  // An image without boxes: all cells are no-object.
  const auto empty = yolo_targets({{}}, grid, 7, 7, 224, 0.5);
  EXPECT_EQ(empty.mask.sum().item<float>(), 0.0f);
  EXPECT_EQ(empty.noobj.sum().item<float>(), 3 * 49);
}

TEST(YoloTargets, BestAnchorBelowIgnoreThresholdStaysNoObject) {
  // A 1-cell-wide, 10-cell-tall box matches no anchor above 0.5 (MGCA's quirk:
  // its best anchor is both the positive and a no-object cell). Centre cell
  // (column 0, row 5); +1 IoUs 4/22, 6/25, 8/30 → anchor 2.
  const std::vector<Anchor> grid = {{1, 1}, {2, 2}, {3, 3}};
  const auto t = yolo_targets({{{0, 0, 32, 320}}}, grid, 10, 10, 320, 0.5);
  EXPECT_EQ(t.mask[0][2][5][0].item<float>(), 1.0f);
  EXPECT_EQ(t.mask.sum().item<float>(), 1.0f);
  EXPECT_EQ(t.noobj[0][2][5][0].item<float>(), 1.0f);
  EXPECT_EQ(t.noobj.sum().item<float>(), 300.0f);
}

TEST(YoloDecode, ZeroOutputsAreAnchorsAtCellCentres) {
  const int64_t S = 64;
  const std::vector<torch::Tensor> outputs = {torch::zeros({1, 18, 2, 2}), torch::zeros({1, 18, 4, 4}),
                                              torch::zeros({1, 18, 8, 8})};
  const auto d = yolo_decode(outputs, S);
  ASSERT_EQ(d.sizes(), (std::vector<int64_t>{1, 3 * (4 + 16 + 64), 6}));
  const auto anchors = yolo_anchors(S);
  // Scale 0 (stride 32), anchor 1, cell (row 1, column 0): row 1·4 + 1·2 + 0 = 6.
  EXPECT_FLOAT_EQ(d[0][6][0].item<float>(), 16.0f);
  EXPECT_FLOAT_EQ(d[0][6][1].item<float>(), 48.0f);
  EXPECT_NEAR(d[0][6][2].item<float>(), anchors[0][1][0], 1e-5);
  EXPECT_NEAR(d[0][6][3].item<float>(), anchors[0][1][1], 1e-5);
  EXPECT_FLOAT_EQ(d[0][6][4].item<float>(), 0.5f);
  // Scale 2 (stride 8), anchor 2, cell (7, 7): the last row; offsets 0.5 + 7.
  EXPECT_FLOAT_EQ(d[0][-1][0].item<float>(), 60.0f);
  EXPECT_NEAR(d[0][-1][2].item<float>(), anchors[2][2][0], 1e-5);
}

TEST(YoloNms, ThresholdsAndGreedySuppressionAsMgca) {
  // (cx, cy, w, h, objectness, class)
  const auto rows = torch::tensor({{50.0, 50.0, 20.0, 20.0, 0.9, 1.0},   // kept
                                   {52.0, 50.0, 20.0, 20.0, 0.8, 1.0},   // IoU ≥ 0.5 with the first: dropped
                                   {90.0, 90.0, 10.0, 10.0, 0.7, 1.0},   // kept
                                   {10.0, 10.0, 10.0, 10.0, 0.49, 1.0},  // below conf 0.5
                                   {90.0, 95.0, 10.0, 10.0, 0.5, 1.0}},  // conf = 0.5 kept; IoU (+1) 0.375 with #3
                                  torch::kFloat64)
                        .unsqueeze(0);
  const auto kept = yolo_nms(rows);
  ASSERT_EQ(kept.size(), 1u);
  ASSERT_EQ(kept[0].size(), 3u);
  EXPECT_DOUBLE_EQ(kept[0][0].score, 0.9);
  EXPECT_FLOAT_EQ(kept[0][0].box.x0, 40.0f);
  EXPECT_FLOAT_EQ(kept[0][0].box.y1, 60.0f);
  EXPECT_DOUBLE_EQ(kept[0][1].score, 0.7);
  EXPECT_DOUBLE_EQ(kept[0][2].score, 0.5);
  EXPECT_NEAR(nms_iou(kept[0][1].box, kept[0][2].box), 66.0 / 176.0, 1e-12);  // 11·6 / (121 + 121 − 66)
  YoloConstants strict;
  strict.nms_threshold = 0.3;
  EXPECT_EQ(yolo_nms(rows, strict)[0].size(), 2u);
}

TEST(YoloLoss, MatchesMgcaYoloLossAndGradient) {
  torch::manual_seed(5);
  const int64_t S = 96, b = 3;
  std::vector<torch::Tensor> outputs = {torch::randn({b, 18, 3, 3}, torch::kFloat64),
                                        torch::randn({b, 18, 6, 6}, torch::kFloat64),
                                        torch::randn({b, 18, 12, 12}, torch::kFloat64)};
  // Boxes of several sizes, two in one image, one image without boxes.
  const std::vector<std::vector<io::Box>> boxes = {{{10, 12, 40, 60}, {50, 20, 94, 90}}, {}, {{30, 30, 37, 41}}};
  auto labels = torch::zeros({b, 10, 5}, torch::kFloat64);
  for (int64_t i = 0; i < b; ++i) {
    for (size_t k = 0; k < boxes[static_cast<size_t>(i)].size(); ++k) {
      const auto& x = boxes[static_cast<size_t>(i)][k];
      const auto row = static_cast<int64_t>(k);
      labels[i][row][1] = (x.x0 + x.x1) / 2.0 / S;
      labels[i][row][2] = (x.y0 + x.y1) / 2.0 / S;
      labels[i][row][3] = (x.x1 - x.x0) / static_cast<double>(S);
      labels[i][row][4] = (x.y1 - x.y0) / static_cast<double>(S);
    }
  }
  test::TempDir dir;
  io::save_safetensors(dir / "in.safetensors", {{"out0", outputs[0]}, {"out1", outputs[1]}, {"out2", outputs[2]},
                                                {"boxes", labels}, {"input_size", torch::tensor({S})}});
  const auto script = test::source_dir() / "tests/unit/eval/yolo_loss_reference.py";
  const auto run = test::run_command(test::python() + " " + script.string() + " " + (dir / "in.safetensors").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto ref = nlohmann::json::parse(run.output);
  for (auto& o : outputs) o.requires_grad_(true);
  const auto loss = yolo_loss(outputs, boxes, S);
  loss.backward();
  // Targets are float32 (as MGCA's), so agreement is to float32 rounding.
  EXPECT_NEAR(loss.item<double>(), ref["loss"].get<double>(), 1e-6 * ref["loss"].get<double>());
  for (size_t k = 0; k < outputs.size(); ++k) {
    const auto expected = ref["grads"][k].get<std::vector<double>>();
    const auto grad = outputs[k].grad().reshape(-1);
    ASSERT_EQ(grad.numel(), static_cast<int64_t>(expected.size()));
    for (int64_t j = 0; j < grad.numel(); ++j) {
      EXPECT_NEAR(grad[j].item<double>(), expected[static_cast<size_t>(j)], 1e-7) << "scale " << k << " element " << j;
    }
  }
}

TEST(DetectionNet, ShapesAndFrozenEncoderForBothBackbones) {
  torch::manual_seed(0);
  auto resnet = std::make_shared<model::ResNetImpl>(model::ResNetConfig::tiny());
  auto vit = std::make_shared<model::ViTImpl>(model::ViTConfig::tiny());
  for (const std::shared_ptr<model::ImageEncoderImpl>& encoder :
       std::vector<std::shared_ptr<model::ImageEncoderImpl>>{resnet, vit}) {
    DetectionNet net(encoder);
    net->train();
    EXPECT_FALSE(encoder->is_training());
    const auto outputs = net->forward(torch::randn({2, 1, 64, 64}));
    ASSERT_EQ(outputs.size(), 3u);
    EXPECT_EQ(outputs[0].sizes(), (std::vector<int64_t>{2, 18, 2, 2}));
    EXPECT_EQ(outputs[1].sizes(), (std::vector<int64_t>{2, 18, 4, 4}));
    EXPECT_EQ(outputs[2].sizes(), (std::vector<int64_t>{2, 18, 8, 8}));
    yolo_loss(outputs, {{{8, 8, 30, 40}}, {}}, 64).backward();
    for (const auto& p : encoder->parameters()) EXPECT_FALSE(p.grad().defined());
    int64_t with_grad = 0;
    for (const auto& p : net->head_parameters()) with_grad += p.grad().defined();
    EXPECT_EQ(with_grad, static_cast<int64_t>(net->head_parameters().size()));
  }
  EXPECT_THROW(DetectionNet(resnet)->forward(torch::randn({1, 1, 48, 48})), Error);
}

}  // namespace
}  // namespace mgca::eval
