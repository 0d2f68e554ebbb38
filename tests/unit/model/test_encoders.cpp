// Encoder parity with the real implementations (make_references.py:
// torchvision resnet50 and vit_b_16, timm vit_base_patch16_224, transformers
// BertModel), loaded through our name mapping. Relative error (with a floor
// of the same factor times max|ref| for entries near zero): in float64
// ≤ 1e-12 (ViT-B/16, BERT: all pass at 1e-13) and ≤ 1e-9 (ResNet-50); in
// float32 ≤ 1e-4.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/model/bert.h"
#include "mgca/model/resnet.h"
#include "mgca/model/vit.h"
#include "mgca/model/weights.h"
#include "model_test_util.h"

namespace mgca::model {
namespace {

using test::Close;

constexpr double kRel = 1e-4;     // float32
constexpr double kRel64 = 1e-12;  // float64

torch::Tensor param(torch::nn::Module& m, const std::string& name) {
  const auto params = m.named_parameters();  // find() points into this dictionary
  const auto* p = params.find(name);
  MGCA_CHECK(p != nullptr, "no parameter {}", name);
  return *p;
}

class ResNetParity : public ::testing::TestWithParam<bool> {};

TEST_P(ResNetParity, MatchesTorchvisionResnet50AtMgcaResolution) {
  const auto r = test::load_reference("resnet");
  auto config = ResNetConfig::resnet50(299);
  config.channels_last = GetParam();
  const auto gray = r["input"];
  {
    ResNet model(config);
    LoadOptions torchvision;
    torchvision.format = WeightFormat::TorchvisionResNet;
    const auto report = load_weights(*model, r.weights, torchvision);
    EXPECT_TRUE(report.complete());
    EXPECT_EQ(report.skipped, (std::vector<std::string>{"fc.bias", "fc.weight"}));
    model->eval();
    torch::NoGradGuard no_grad;
    const auto out = model->forward(gray);
    EXPECT_EQ(model->num_patches(224), 361);
    EXPECT_EQ(out.local.sizes(), (std::vector<int64_t>{2, 361, 1024}));
    EXPECT_TRUE(Close(out.global, r["eval.global"], kRel));
    EXPECT_TRUE(Close(out.local, r["eval.local"], kRel));
    EXPECT_FALSE(out.patch_attention.defined());
    // 3-channel input (gray replicated) gives the same result as the folded 1-channel path.
    const auto rgb = model->forward(gray.expand({2, 3, 224, 224}));
    EXPECT_TRUE(Close(rgb.global, r["eval.global"], kRel));
  }
  {
    ResNet model(config);
    load_weights(*model, r.weights);
    model->train();
    torch::NoGradGuard no_grad;
    const auto out = model->forward(gray);
    EXPECT_TRUE(Close(out.global, r["train.global"], kRel));
    EXPECT_TRUE(Close(out.local, r["train.local"], kRel));
    auto& bn = *model->layers[0]->ptr<BottleneckImpl>(0)->bn1;
    EXPECT_TRUE(Close(bn.running_mean, r["train.layer1.0.bn1.running_mean"], kRel));
    EXPECT_TRUE(Close(bn.running_var, r["train.layer1.0.bn1.running_var"], kRel));
  }
  {
    // Gradients in float64 (see make_references.py), 64 px resized to 96.
    auto small = config;
    small.input_size = 96;
    ResNet model(small);
    load_weights(*model, r.weights);
    model->to(torch::kFloat64);
    model->train();
    const auto out = model->forward(r["f64.input"]);
    ((out.global * r["f64.r_global"]).sum() + (out.local * r["f64.r_local"]).sum()).backward();
    EXPECT_TRUE(Close(out.global, r["f64.global"], 1e-9));
    EXPECT_TRUE(Close(out.local, r["f64.local"], 1e-9));
    for (const std::string name : {"conv1.weight", "layer2.1.conv2.weight", "layer4.2.bn3.bias"}) {
      EXPECT_TRUE(Close(param(*model, name).grad(), r["f64.grad." + name], 1e-9)) << name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(MemoryFormat, ResNetParity, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "ChannelsLast" : "Contiguous"; });

// The reference's gradients ("grad.<public name>") under our names: loaded
// through the same name map as the weights into `holder` (a float64 model of
// the same shape), so that query/key/value gradients are fused as the
// weights are. The forward comparisons prove the map itself.
std::map<std::string, torch::Tensor> reference_grads(torch::nn::Module& holder, const test::Reference& r,
                                                     WeightFormat format) {
  std::map<std::string, torch::Tensor> public_grads;
  for (const auto& [name, t] : r.ref) {
    if (name.rfind("grad.", 0) == 0) public_grads[name.substr(5)] = t;
  }
  LoadOptions partial;
  partial.format = format;
  partial.strict = false;
  const auto report = load_weights(holder, public_grads, partial);
  EXPECT_TRUE(report.unexpected.empty() && report.mismatched.empty()) << report.summary();
  std::map<std::string, torch::Tensor> ours;
  for (const auto& name : report.loaded) ours[name] = param(holder, name).detach();
  return ours;
}

void expect_grads(torch::nn::Module& model, const std::map<std::string, torch::Tensor>& expected, size_t count) {
  EXPECT_EQ(expected.size(), count);
  for (const auto& [name, grad] : expected) {
    EXPECT_TRUE(Close(param(model, name).grad(), grad, kRel64)) << name;
  }
}

// ViT-B/16 with random weights against timm's vit_base_patch16_224 and
// torchvision's vit_b_16 (make_references.py), both in float64: outputs, the
// last block's [CLS] attention and gradients.
class ViTParity : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(ViTParity, MatchesTheRealViTB16InFloat64) {
  const bool timm = GetParam() == WeightFormat::TimmViT;
  const auto r = test::load_reference(timm ? "vit_timm" : "vit_torchvision");
  ViT model(ViTConfig::base16());
  const auto report = load_weights(*model, r.weights);  // auto-detected
  EXPECT_EQ(report.format, GetParam());
  EXPECT_TRUE(report.complete());
  EXPECT_EQ(report.loaded.size(), 150u);  // every tensor of the model
  EXPECT_EQ(report.skipped, timm ? (std::vector<std::string>{"head.bias", "head.weight"})
                                 : (std::vector<std::string>{"heads.head.bias", "heads.head.weight"}));
  model->to(torch::kFloat64);
  const auto out = model->forward(r["input"]);
  EXPECT_EQ(out.local.sizes(), (std::vector<int64_t>{2, 196, 768}));
  EXPECT_TRUE(Close(out.global, r["global"], kRel64));
  EXPECT_TRUE(Close(out.local, r["local"], kRel64));
  EXPECT_TRUE(Close(out.patch_attention, r["patch_attention"], kRel64));
  EXPECT_FALSE(out.patch_attention.requires_grad());
  ((out.global * r["r_global"]).sum() + (out.local * r["r_local"]).sum()).backward();
  ViT holder(ViTConfig::base16());
  holder->to(torch::kFloat64);
  expect_grads(*model, reference_grads(*holder, r, GetParam()), 11);
}

INSTANTIATE_TEST_SUITE_P(Implementation, ViTParity,
                         ::testing::Values(WeightFormat::TimmViT, WeightFormat::TorchvisionViT),
                         [](const auto& info) { return info.param == WeightFormat::TimmViT ? "Timm" : "Torchvision"; });

TEST(ViTResize, LoadsTimmNamesAndInterpolatesPositionsAsTimm) {
  const auto r = test::load_reference("vit_timm_resize");  // timm at 32 px, reference: timm at 48 px
  ViTConfig config;
  config.image_size = 48;
  config.patch_size = 8;
  config.dim = 64;
  config.depth = 2;
  config.heads = 2;
  config.mlp_dim = 128;
  ViT model(config);
  // Without interpolation the 32-px position table does not fit: a clear error naming it.
  LoadOptions no_interp;
  no_interp.interpolate_positions = false;
  const auto message = test::error_of([&] { load_weights(*model, r.weights, no_interp); });
  EXPECT_NE(message.find("pos_embed: checkpoint [1, 17, 64], model [1, 37, 64]"), std::string::npos) << message;

  const auto report = load_weights(*model, r.weights);
  EXPECT_EQ(report.format, WeightFormat::TimmViT);
  EXPECT_TRUE(report.complete());
  EXPECT_EQ(report.resized.size(), 1u);
  EXPECT_EQ(report.skipped, (std::vector<std::string>{"head.bias", "head.weight"}));
  EXPECT_TRUE(Close(model->pos_embed, r["pos_embed_48"], 1e-6));
  torch::NoGradGuard no_grad;
  const auto out = model->forward(r["input"]);
  EXPECT_TRUE(Close(out.global, r["global"], kRel));
  EXPECT_TRUE(Close(out.local, r["local"], kRel));
  EXPECT_TRUE(Close(out.patch_attention, r["patch_attention"], kRel));
}

// transformers' BertModel checkpoint (4 layers) into a 3-layer model, as MGCA
// uses the first 6 of 12; float64.
BertConfig bert_for_reference() {
  auto config = BertConfig::clinical(3);
  config.hidden_dropout = 0.0;
  config.attention_dropout = 0.0;
  return config;
}

Bert bert_with_reference_weights(const BertConfig& config, const test::Reference& r) {
  Bert model(config);
  const auto report = load_weights(*model, r.weights);
  EXPECT_EQ(report.format, WeightFormat::HuggingFaceBert);
  EXPECT_TRUE(report.complete());
  // layer 3 (16 tensors), pooler (2), position_ids, the MLM head bias.
  EXPECT_EQ(report.skipped.size(), 20u);
  model->to(torch::kFloat64);
  return model;
}

std::map<std::string, torch::Tensor> bert_reference_grads(const test::Reference& r) {
  Bert holder(bert_for_reference());
  holder->to(torch::kFloat64);
  return reference_grads(*holder, r, WeightFormat::HuggingFaceBert);
}

TEST(BertParity, MatchesTransformersBertModelInFloat64) {
  const auto r = test::load_reference("bert");
  auto model = bert_with_reference_weights(bert_for_reference(), r);
  model->train();  // dropout 0: train mode must equal the reference too
  const auto out = model->forward(r["input_ids"], r["attention_mask"]);
  EXPECT_TRUE(Close(out.hidden, r["hidden"], kRel64));
  const auto expected_cls = r["attention_last"].mean(1).select(1, 0);  // [b, L]
  EXPECT_TRUE(Close(out.cls_attention, expected_cls, kRel64));
  EXPECT_FALSE(out.cls_attention.requires_grad());
  // Pad keys get zero attention.
  EXPECT_EQ(out.cls_attention[2].narrow(0, 4, 12).abs().max().item<double>(), 0.0);
  (out.hidden * r["r_hidden"]).sum().backward();
  // embeddings (4), per layer fused qkv (2) + 7 vectors, layer 1 fc1 and layer 2 fc2 weights.
  expect_grads(*model, bert_reference_grads(r), 4 + 3 * 9 + 2);
}

TEST(BertParity, FrozenPrefixGetsNoGradientAndTheRestIsExact) {
  const auto r = test::load_reference("bert");
  auto config = bert_for_reference();
  config.freeze_embeddings = true;
  config.frozen_layers = 2;
  auto model = bert_with_reference_weights(config, r);
  model->train();
  const auto out = model->forward(r["input_ids"], r["attention_mask"]);
  EXPECT_TRUE(Close(out.hidden, r["hidden"], kRel64));
  (out.hidden * r["r_hidden"]).sum().backward();
  int64_t frozen = 0, trained = 0;
  for (const auto& item : model->named_parameters()) {
    const bool should_train = item.key().rfind("layers.2.", 0) == 0;
    EXPECT_EQ(item.value().requires_grad(), should_train) << item.key();
    EXPECT_EQ(item.value().grad().defined(), should_train) << item.key();
    (should_train ? trained : frozen) += 1;
  }
  EXPECT_EQ(trained, 12);
  EXPECT_EQ(frozen, 5 + 2 * 12);  // embeddings (3 tables + norm) and 2 layers
  int64_t compared = 0;
  for (const auto& [name, grad] : bert_reference_grads(r)) {
    if (name.rfind("layers.2.", 0) != 0) continue;
    EXPECT_TRUE(Close(param(*model, name).grad(), grad, kRel64)) << name;
    ++compared;
  }
  EXPECT_EQ(compared, 10);  // fused qkv (2), 7 vectors, fc2 weight
}

// Gray input through the folded first layer equals the gray image replicated
// to RGB: outputs and the first layer's weight gradient.
template <typename Model>
void expect_gray_fold_exact(Model model, int64_t size, const std::string& first_weight) {
  torch::manual_seed(11);
  const auto gray = torch::rand({2, 1, size, size});
  model->eval();
  // A random projection as the loss (a sum of squares of LayerNorm outputs
  // would be nearly constant, its gradient mostly rounding noise).
  auto a = model->forward(gray);
  const auto r1 = torch::randn(a.global.sizes()), r2 = torch::randn(a.local.sizes());
  ((a.global * r1).sum() + (a.local * r2).sum()).backward();
  const auto grad_a = param(*model, first_weight).grad().clone();
  model->zero_grad();
  auto b = model->forward(gray.expand({2, 3, size, size}));
  ((b.global * r1).sum() + (b.local * r2).sum()).backward();
  EXPECT_TRUE(Close(a.global, b.global, 1e-5));
  EXPECT_TRUE(Close(a.local, b.local, 1e-5));
  EXPECT_TRUE(Close(grad_a, param(*model, first_weight).grad(), 1e-4));
}

TEST(GrayInput, FoldedFirstLayerEqualsReplicatedRgb) {
  expect_gray_fold_exact(ViT(ViTConfig::tiny()), 64, "patch_embed.proj.weight");
  expect_gray_fold_exact(ResNet(ResNetConfig::tiny(96)), 64, "conv1.weight");
}

TEST(GrayInput, RejectsOtherChannelCounts) {
  ViT vit(ViTConfig::tiny());
  const auto message = test::error_of([&] { vit->forward(torch::rand({1, 2, 64, 64})); });
  EXPECT_NE(message.find("1 (gray) or 3 (RGB) channels, got 2"), std::string::npos) << message;
}

TEST(Shapes, TinyAndBasePresets) {
  EXPECT_EQ(ViTConfig::base16().num_patches(), 196);
  EXPECT_EQ(ResNetConfig::resnet50(299).num_patches(224), 361);
  EXPECT_EQ(ResNetConfig::resnet50().num_patches(224), 196);
  ResNet resnet(ResNetConfig::tiny());
  torch::NoGradGuard no_grad;
  const auto out = resnet->forward(torch::rand({3, 1, 64, 64}));
  EXPECT_EQ(out.global.sizes(), (std::vector<int64_t>{3, 512}));
  EXPECT_EQ(out.local.sizes(), (std::vector<int64_t>{3, resnet->num_patches(64), 256}));
  Bert bert(BertConfig::tiny());
  bert->eval();
  const auto ids = torch::randint(1000, 2000, {2, 10}, torch::kLong);
  const auto text = bert->forward(ids, torch::ones({2, 10}, torch::kLong));
  EXPECT_EQ(text.hidden.sizes(), (std::vector<int64_t>{2, 10, 128}));
  EXPECT_TRUE(Close(text.cls_attention.sum(1), torch::ones({2}), 1e-6));
}

}  // namespace
}  // namespace mgca::model
