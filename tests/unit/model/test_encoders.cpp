// Encoder parity with independent implementations (make_references.py:
// torchvision resnet50 / vit_b_16, a Hugging Face-named BERT written from
// PyTorch modules), loaded through our name mapping. fp32, relative error
// ≤ 1e-4 (with a floor of 1e-4·max|ref| for entries near zero).
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

constexpr double kRel = 1e-4;

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

TEST(ViTParity, MatchesTorchvisionVitB16) {
  const auto r = test::load_reference("vit");
  ViT model(ViTConfig::base16());
  const auto report = load_weights(*model, r.weights);  // auto-detected
  EXPECT_EQ(report.format, WeightFormat::TorchvisionViT);
  EXPECT_TRUE(report.complete());
  EXPECT_EQ(report.loaded.size(), 150u);  // every tensor of vit_b_16 but heads.head.{weight,bias}
  EXPECT_EQ(report.skipped.size(), 2u);
  const auto gray = r["input"];
  const auto out = model->forward(gray);
  EXPECT_EQ(out.local.sizes(), (std::vector<int64_t>{2, 196, 768}));
  EXPECT_TRUE(Close(out.global, r["global"], kRel));
  EXPECT_TRUE(Close(out.local, r["local"], kRel));
  EXPECT_TRUE(Close(out.patch_attention, r["patch_attention"], kRel));
  EXPECT_FALSE(out.patch_attention.requires_grad());
  ((out.global * r["r_global"]).sum() + (out.local * r["r_local"]).sum()).backward();
  const std::vector<std::pair<std::string, std::string>> grads = {
      {"patch_embed.proj.weight", "conv_proj.weight"},
      {"blocks.5.attn.qkv.weight", "encoder.layers.encoder_layer_5.self_attention.in_proj_weight"},
      {"blocks.11.mlp.fc2.weight", "encoder.layers.encoder_layer_11.mlp.3.weight"},
      {"pos_embed", "encoder.pos_embedding"}};
  for (const auto& [ours, theirs] : grads) {
    EXPECT_TRUE(Close(param(*model, ours).grad(), r["grad." + theirs], kRel)) << ours;
  }
}

TEST(ViTParity, LoadsTimmNamesAndInterpolatesPositions) {
  const auto r = test::load_reference("vit_timm");  // timm names at 32 px, reference at 48 px
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
  EXPECT_TRUE(Close(model->pos_embed, r["pos_embed_48"], 1e-5));
  torch::NoGradGuard no_grad;
  const auto out = model->forward(r["input"]);
  EXPECT_TRUE(Close(out.global, r["global"], kRel));
  EXPECT_TRUE(Close(out.local, r["local"], kRel));
  EXPECT_TRUE(Close(out.patch_attention, r["patch_attention"], kRel));
}

// HF BERT checkpoint (4 layers) into a 3-layer model, as MGCA uses the first 6 of 12.
BertConfig bert_for_reference() {
  auto config = BertConfig::clinical(3);
  config.hidden_dropout = 0.0;
  config.attention_dropout = 0.0;
  return config;
}

// Our gradient for an HF parameter (query/key/value are row blocks of qkv).
torch::Tensor our_bert_grad(BertImpl& model, const std::string& hf) {
  const std::map<std::string, std::pair<std::string, int>> names = {
      {"embeddings.position_embeddings.weight", {"embeddings.position_embeddings.weight", -1}},
      {"embeddings.LayerNorm.weight", {"embeddings.norm.weight", -1}},
      {"encoder.layer.0.attention.self.key.weight", {"layers.0.attn.qkv.weight", 1}},
      {"encoder.layer.1.intermediate.dense.weight", {"layers.1.fc1.weight", -1}},
      {"encoder.layer.2.attention.self.value.bias", {"layers.2.attn.qkv.bias", 2}},
      {"encoder.layer.2.output.LayerNorm.bias", {"layers.2.norm2.bias", -1}}};
  const auto& [ours, block] = names.at(hf);
  auto g = param(model, ours).grad();
  if (!g.defined() || block < 0) return g;
  return g.narrow(0, block * 768, 768);
}

TEST(BertParity, MatchesHuggingFaceNamedReference) {
  const auto r = test::load_reference("bert");
  Bert model(bert_for_reference());
  const auto report = load_weights(*model, r.weights);
  EXPECT_EQ(report.format, WeightFormat::HuggingFaceBert);
  EXPECT_TRUE(report.complete());
  // layer 3 (16 tensors), pooler (2), position_ids, the MLM head bias.
  EXPECT_EQ(report.skipped.size(), 20u);
  model->train();  // dropout 0: train mode must equal the reference too
  const auto out = model->forward(r["input_ids"], r["attention_mask"]);
  EXPECT_TRUE(Close(out.hidden, r["hidden"], kRel));
  const auto expected_cls = r["attention_last"].mean(1).select(1, 0);  // [b, L]
  EXPECT_TRUE(Close(out.cls_attention, expected_cls, kRel));
  EXPECT_FALSE(out.cls_attention.requires_grad());
  // Pad keys get (numerically) zero attention.
  EXPECT_LT(out.cls_attention[2].narrow(0, 4, 12).abs().max().item<double>(), 1e-30);
  (out.hidden * r["r_hidden"]).sum().backward();
  for (const std::string hf : {"embeddings.position_embeddings.weight", "embeddings.LayerNorm.weight",
                               "encoder.layer.0.attention.self.key.weight", "encoder.layer.1.intermediate.dense.weight",
                               "encoder.layer.2.attention.self.value.bias", "encoder.layer.2.output.LayerNorm.bias"}) {
    EXPECT_TRUE(Close(our_bert_grad(*model, hf), r["grad." + hf], kRel)) << hf;
  }
}

TEST(BertParity, FrozenPrefixGetsNoGradientAndTheRestIsExact) {
  const auto r = test::load_reference("bert");
  auto config = bert_for_reference();
  config.freeze_embeddings = true;
  config.frozen_layers = 2;
  Bert model(config);
  load_weights(*model, r.weights);
  model->train();
  const auto out = model->forward(r["input_ids"], r["attention_mask"]);
  EXPECT_TRUE(Close(out.hidden, r["hidden"], kRel));
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
  for (const std::string hf : {"encoder.layer.2.attention.self.value.bias", "encoder.layer.2.output.LayerNorm.bias"}) {
    EXPECT_TRUE(Close(our_bert_grad(*model, hf), r["grad." + hf], kRel)) << hf;
  }
  EXPECT_FALSE(our_bert_grad(*model, "encoder.layer.1.intermediate.dense.weight").defined());
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
