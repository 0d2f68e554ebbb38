// Segmentation head: MGCA's focal + Dice loss against its Python code, the
// decoders' output shapes on both encoders, a frozen encoder, and a decoder
// that learns a mask.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "mgca/eval/localization_metrics.h"
#include "mgca/eval/segmentation.h"
#include "mgca/io/safetensors.h"
#include "mgca/model/resnet.h"
#include "mgca/model/vit.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::eval {
namespace {

TEST(SegmentationLoss, MatchesMgcaMixedLoss) {
  torch::manual_seed(3);
  const auto logits = torch::randn({3, 8, 8}, torch::kFloat64) * 3;
  const auto targets = (torch::rand({3, 8, 8}) > 0.7).to(torch::kFloat64);
  test::TempDir dir;
  io::save_safetensors(dir / "in.safetensors", {{"logits", logits}, {"targets", targets}});
  const auto script = test::source_dir() / "tests/unit/eval/segmentation_loss_reference.py";
  const auto run = test::run_command(test::python() + " " + script.string() + " " + (dir / "in.safetensors").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto ref = nlohmann::json::parse(run.output);
  auto x = logits.clone().requires_grad_(true);
  const auto loss = mixed_segmentation_loss(x, targets);
  loss.backward();
  EXPECT_NEAR(loss.item<double>(), ref["loss"].get<double>(), 1e-12);
  const auto grad = x.grad().reshape(-1);
  const auto expected = ref["grad"].get<std::vector<double>>();
  for (int64_t j = 0; j < grad.numel(); ++j) EXPECT_NEAR(grad[j].item<double>(), expected[static_cast<size_t>(j)], 1e-12);
  EXPECT_THROW(mixed_segmentation_loss(x, targets.reshape({3, 64})), Error);
}

TEST(SegmentationNet, ShapesAndFrozenEncoderForBothBackbones) {
  torch::manual_seed(0);
  auto resnet = std::make_shared<model::ResNetImpl>(model::ResNetConfig::tiny());
  auto vit = std::make_shared<model::ViTImpl>(model::ViTConfig::tiny());
  for (const auto& [encoder, size] : std::vector<std::pair<std::shared_ptr<model::ImageEncoderImpl>, int64_t>>{
           {resnet, 64}, {vit, 64}}) {
    SegmentationNet net(encoder);
    net->train();
    EXPECT_FALSE(encoder->is_training());
    const auto logits = net->forward(torch::randn({2, 1, size, size}));
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, size, size}));
    mixed_segmentation_loss(logits, torch::zeros_like(logits)).backward();
    for (const auto& p : encoder->parameters()) {
      EXPECT_FALSE(p.requires_grad());
      EXPECT_FALSE(p.grad().defined());
    }
    int64_t with_grad = 0;
    for (const auto& p : net->head_parameters()) with_grad += p.grad().defined();
    EXPECT_EQ(with_grad, static_cast<int64_t>(net->head_parameters().size()));
  }
  EXPECT_THROW(SegmentationNet(resnet)->forward(torch::randn({1, 1, 48, 48})), Error);
}

// A decoder on a random frozen ResNet learns a fixed square: its Dice rises.
TEST(SegmentationNet, DecoderLearnsAMask) {
  torch::manual_seed(1);
  auto resnet = std::make_shared<model::ResNetImpl>(model::ResNetConfig::tiny());
  SegmentationNet net(resnet);
  auto images = torch::randn({4, 1, 32, 32}) * 0.1;
  auto masks = torch::zeros({4, 32, 32});
  masks.slice(1, 8, 20).slice(2, 10, 24).fill_(1);
  images = images + masks.unsqueeze(1);
  torch::optim::AdamW optimizer(net->head_parameters(), torch::optim::AdamWOptions(1e-2));
  const auto dice_of = [&] {
    torch::NoGradGuard no_grad;
    net->eval();
    const auto predicted = (net->forward(images).sigmoid() > 0.5).to(torch::kUInt8).contiguous();
    const auto truth = masks.to(torch::kUInt8).contiguous();
    DiceMean dice;
    for (int64_t i = 0; i < 4; ++i) dice.add(predicted[i].data_ptr<uint8_t>(), truth[i].data_ptr<uint8_t>(), 32 * 32);
    net->train();
    return dice.mean();
  };
  const double before = dice_of();
  for (int step = 0; step < 30; ++step) {
    optimizer.zero_grad();
    mixed_segmentation_loss(net->forward(images), masks).backward();
    optimizer.step();
  }
  const double after = dice_of();
  EXPECT_GT(after, 0.8) << "before " << before;
  EXPECT_GT(after, before + 0.2);
}

}  // namespace
}  // namespace mgca::eval
