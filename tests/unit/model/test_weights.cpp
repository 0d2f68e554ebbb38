// Pretrained-weight loading: strict errors name every missing, unexpected and
// mis-shaped tensor (in the checkpoint's own names), partial loads, our own
// checkpoints round-trip through safetensors files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "mgca/io/safetensors.h"
#include "mgca/model/bert.h"
#include "mgca/model/heads.h"
#include "mgca/model/mgca_model.h"
#include "mgca/model/resnet.h"
#include "mgca/model/vit.h"
#include "mgca/model/weights.h"
#include "model_test_util.h"

namespace mgca::model {
namespace {

using test::error_of;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::vector<std::pair<std::string, torch::Tensor>> as_list(const std::map<std::string, torch::Tensor>& tensors) {
  return {tensors.begin(), tensors.end()};
}

std::map<std::string, torch::Tensor> state_of(const torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (auto& [name, t] : state_tensors(module)) out[name] = t.detach().clone();
  return out;
}

// A Hugging Face-named copy of a BERT's state (the inverse of our mapping).
std::map<std::string, torch::Tensor> hf_state(const BertImpl& bert) {
  std::map<std::string, torch::Tensor> hf;
  const auto ours = state_of(bert);
  const int64_t h = bert.config().hidden;
  hf["bert.embeddings.word_embeddings.weight"] = ours.at("embeddings.word_embeddings.weight");
  hf["bert.embeddings.position_embeddings.weight"] = ours.at("embeddings.position_embeddings.weight");
  hf["bert.embeddings.token_type_embeddings.weight"] = ours.at("embeddings.token_type_embeddings.weight");
  hf["bert.embeddings.LayerNorm.gamma"] = ours.at("embeddings.norm.weight");  // old TF-era names
  hf["bert.embeddings.LayerNorm.beta"] = ours.at("embeddings.norm.bias");
  for (int64_t i = 0; i < bert.config().num_layers; ++i) {
    const auto l = "layers." + std::to_string(i) + ".";
    const auto e = "bert.encoder.layer." + std::to_string(i) + ".";
    const char* qkv[] = {"query", "key", "value"};
    for (int part = 0; part < 3; ++part) {
      for (const std::string p : {"weight", "bias"}) {
        hf[e + "attention.self." + qkv[part] + "." + p] = ours.at(l + "attn.qkv." + p).narrow(0, part * h, h);
      }
    }
    for (const std::string p : {"weight", "bias"}) {
      hf[e + "attention.output.dense." + p] = ours.at(l + "attn.proj." + p);
      hf[e + "attention.output.LayerNorm." + p] = ours.at(l + "norm1." + p);
      hf[e + "intermediate.dense." + p] = ours.at(l + "fc1." + p);
      hf[e + "output.dense." + p] = ours.at(l + "fc2." + p);
      hf[e + "output.LayerNorm." + p] = ours.at(l + "norm2." + p);
    }
  }
  hf["bert.pooler.dense.weight"] = torch::zeros({h, h});
  return hf;
}

void expect_same_state(const torch::nn::Module& a, const torch::nn::Module& b) {
  const auto sa = state_of(a), sb = state_of(b);
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [name, t] : sa) EXPECT_TRUE(torch::equal(t, sb.at(name))) << name;
}

TEST(Weights, StrictLoadNamesWrongShapeTensor) {
  ViT source(ViTConfig::tiny()), target(ViTConfig::tiny());
  auto state = state_of(*source);
  state["blocks.1.mlp.fc1.weight"] = torch::zeros({768, 190});
  const auto before = state_of(*target);
  const auto message = error_of([&] { load_weights(*target, state, {}, "vit.safetensors"); });
  EXPECT_TRUE(contains(message, "vit.safetensors: cannot load")) << message;
  EXPECT_TRUE(contains(message, "blocks.1.mlp.fc1.weight: checkpoint [768, 190], model [768, 192]")) << message;
  // A failed strict load changes nothing.
  for (const auto& [name, t] : before) EXPECT_TRUE(torch::equal(t, state_of(*target).at(name))) << name;
}

TEST(Weights, StrictLoadNamesMissingTensor) {
  ResNet source(ResNetConfig::tiny()), target(ResNetConfig::tiny());
  auto state = state_of(*source);
  state.erase("layer3.0.downsample.1.running_var");
  const auto message = error_of([&] { load_weights(*target, state); });
  EXPECT_TRUE(contains(message, "missing (1):\n    layer3.0.downsample.1.running_var")) << message;
}

TEST(Weights, OneErrorListsMissingUnexpectedAndMisShaped) {
  Bert source(BertConfig::tiny()), target(BertConfig::tiny());
  auto hf = hf_state(*source);
  hf.erase("bert.encoder.layer.1.attention.self.key.weight");
  hf.erase("bert.encoder.layer.0.output.LayerNorm.bias");
  hf["bert.encoder.layer.0.output.dense.weight"] = torch::zeros({128, 500});
  hf["bert.encoder.layer.0.attention.self.query.bias"] = torch::zeros({127});
  hf["bert.encoder.layer.0.crossattention.self.query.weight"] = torch::zeros({128, 128});
  const auto message = error_of([&] { load_weights(*target, hf, {}, "bert.safetensors"); });
  EXPECT_TRUE(contains(message, "layers.1.attn.qkv.weight (checkpoint lacks encoder.layer.1.attention.self.key.weight)"))
      << message;
  EXPECT_TRUE(contains(message, "\n    layers.0.norm2.bias\n")) << message;
  EXPECT_TRUE(contains(message, "layers.0.fc2.weight: checkpoint [128, 500], model [128, 512] "
                                "(from bert.encoder.layer.0.output.dense.weight)"))
      << message;
  EXPECT_TRUE(contains(message, "bert.encoder.layer.0.attention.self.query.bias: checkpoint [127], model [128] "
                                "(part of layers.0.attn.qkv.bias)"))
      << message;
  EXPECT_TRUE(contains(message, "unexpected (1):\n    bert.encoder.layer.0.crossattention.self.query.weight"))
      << message;
  // No tensor is reported twice.
  EXPECT_TRUE(contains(message, "2 missing, 1 unexpected, 2 mis-shaped")) << message;
}

TEST(Weights, PartialLoadFillsWhatMatchesAndReportsTheRest) {
  Bert source(BertConfig::tiny()), target(BertConfig::tiny());
  auto hf = hf_state(*source);
  hf.erase("bert.encoder.layer.1.attention.self.value.bias");
  hf["bert.encoder.layer.1.output.dense.weight"] = torch::zeros({3, 3});
  {
    torch::NoGradGuard no_grad;
    target->named_parameters()["layers.1.attn.qkv.bias"].fill_(7.0);  // stays: not in the checkpoint
  }
  LoadOptions partial;
  partial.strict = false;
  const auto report = load_weights(*target, hf, partial);
  EXPECT_EQ(report.missing, (std::vector<std::string>{
                                "layers.1.attn.qkv.bias (checkpoint lacks encoder.layer.1.attention.self.value.bias)"}));
  EXPECT_EQ(report.mismatched.size(), 1u);
  EXPECT_TRUE(report.unexpected.empty());
  const auto src = state_of(*source), dst = state_of(*target);
  EXPECT_TRUE(torch::equal(src.at("layers.1.attn.qkv.weight"), dst.at("layers.1.attn.qkv.weight")));
  EXPECT_TRUE(torch::equal(src.at("embeddings.norm.weight"), dst.at("embeddings.norm.weight")));
  EXPECT_FALSE(torch::equal(src.at("layers.1.fc2.weight"), dst.at("layers.1.fc2.weight")));
  EXPECT_TRUE(dst.at("layers.1.attn.qkv.bias").eq(7.0).all().item<bool>());
}

TEST(Weights, HuggingFaceMappingRoundTripsAndSkipsExtraLayers) {
  auto big_config = BertConfig::tiny();
  big_config.num_layers = 4;
  Bert source(big_config);
  auto small_config = BertConfig::tiny();  // 2 layers: the first two of the checkpoint
  Bert target(small_config);
  auto hf = hf_state(*source);
  hf["bert.embeddings.position_ids"] = torch::arange(128).unsqueeze(0);
  const auto report = load_weights(*target, hf);
  EXPECT_EQ(report.format, WeightFormat::HuggingFaceBert);
  EXPECT_TRUE(report.complete());
  EXPECT_EQ(report.skipped.size(), 2u * 16u + 2u);  // layers 2 and 3, pooler, position_ids
  const auto src = state_of(*source), dst = state_of(*target);
  for (const auto& [name, t] : dst) EXPECT_TRUE(torch::equal(t, src.at(name))) << name;
}

TEST(Weights, OwnCheckpointRoundTripsThroughSafetensors) {
  test::TempDir dir;
  const auto vocab = WordVocabulary{std::vector<uint8_t>(28996, 0), 102};
  for (auto backbone : {ImageBackbone::ViT, ImageBackbone::ResNet}) {
    MgcaModel a(MgcaModelConfig::tiny(backbone), vocab), b(MgcaModelConfig::tiny(backbone), vocab);
    const auto file = dir / "model.safetensors";
    io::save_safetensors(file, state_tensors(*a));
    const auto report = load_weights(*b, file);
    EXPECT_EQ(report.format, WeightFormat::Ours);
    EXPECT_TRUE(report.complete());
    expect_same_state(*a, *b);
    // The image encoder alone, taken out of the whole-model checkpoint.
    auto c = MgcaModel(MgcaModelConfig::tiny(backbone), vocab);
    LoadOptions image_only;
    image_only.prefix = "image.";
    load_weights(*c->image, file, image_only);
    expect_same_state(*a->image, *c->image);
  }
}

// The same errors through a checkpoint file (what `mgca train --init` and
// `mgca eval` load): a file cut short inside its data, a wrong-shape tensor
// and a missing tensor each name the file and the tensor.
TEST(Weights, CheckpointFileErrorsNameFileAndTensor) {
  test::TempDir dir;
  Bert source(BertConfig::tiny()), target(BertConfig::tiny());
  const auto before = state_of(*target);

  const auto truncated = dir / "truncated.safetensors";
  io::save_safetensors(truncated, as_list(hf_state(*source)));
  // The tensor stored last, from the header itself (8-byte length, JSON).
  std::string last;
  {
    std::ifstream in(truncated, std::ios::binary);
    uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    std::string header(n, '\0');
    in.read(header.data(), static_cast<std::streamsize>(n));
    int64_t end = -1;
    const auto json = nlohmann::json::parse(header);
    for (auto it = json.begin(); it != json.end(); ++it) {
      if (it.key() != "__metadata__" && it.value().at("data_offsets")[1].get<int64_t>() > end) {
        end = it.value().at("data_offsets")[1].get<int64_t>();
        last = it.key();
      }
    }
  }
  ASSERT_FALSE(last.empty());
  std::filesystem::resize_file(truncated, std::filesystem::file_size(truncated) - 3);
  auto message = error_of([&] { load_weights(*target, truncated); });
  EXPECT_TRUE(contains(message, "tensor '" + last + "' in " + truncated.string())) << message;
  EXPECT_TRUE(contains(message, "run past the data section")) << message;

  auto hf = hf_state(*source);
  hf["bert.encoder.layer.1.intermediate.dense.weight"] = torch::zeros({512, 100});
  hf.erase("bert.encoder.layer.0.output.LayerNorm.bias");
  const auto bad = dir / "bad.safetensors";
  io::save_safetensors(bad, as_list(hf));
  message = error_of([&] { load_weights(*target, bad); });
  EXPECT_TRUE(contains(message, bad.string() + ": cannot load")) << message;
  EXPECT_TRUE(contains(message, "layers.1.fc1.weight: checkpoint [512, 100], model [512, 128] "
                                "(from bert.encoder.layer.1.intermediate.dense.weight)"))
      << message;
  EXPECT_TRUE(contains(message, "missing (1):\n    layers.0.norm2.bias")) << message;
  // Neither failed load changed the model.
  for (const auto& [name, t] : before) EXPECT_TRUE(torch::equal(t, state_of(*target).at(name))) << name;
}

TEST(Weights, FormatNamesAndMisuse) {
  EXPECT_EQ(parse_weight_format("torchvision-resnet"), WeightFormat::TorchvisionResNet);
  EXPECT_EQ(to_string(WeightFormat::HuggingFaceBert), "hf-bert");
  EXPECT_TRUE(contains(error_of([] { parse_weight_format("keras"); }), "unknown weight format 'keras'"));
  ResNet resnet(ResNetConfig::tiny());
  LoadOptions hf;
  hf.format = WeightFormat::HuggingFaceBert;
  EXPECT_TRUE(contains(error_of([&] { load_weights(*resnet, state_of(*resnet), hf, "x.safetensors"); }),
                       "x.safetensors: format hf-bert cannot load into"));
}

TEST(Weights, PositionEmbeddingResizeKeepsClsAndIsExactForSameGrid) {
  const auto pos = torch::randn({1, 1 + 16, 8});
  EXPECT_TRUE(torch::equal(resize_position_embedding(pos, 4), pos));
  const auto big = resize_position_embedding(pos, 6);
  EXPECT_EQ(big.sizes(), (std::vector<int64_t>{1, 37, 8}));
  EXPECT_TRUE(torch::equal(big.narrow(1, 0, 1), pos.narrow(1, 0, 1)));
  EXPECT_TRUE(contains(error_of([] { resize_position_embedding(torch::zeros({1, 1 + 15, 8}), 4); }),
                       "15 patch positions, not a square grid"));
}

// A head with a bias before each BatchNorm (the official code's heads and our
// checkpoints before the biases were dropped), evaluated with plain ops.
struct BiasedHead {
  std::map<std::string, torch::Tensor> tensors;
  torch::Tensor eval(const torch::Tensor& x) const {
    const auto& t = tensors;
    auto h = at::addmm(t.at("fc1.bias"), x, t.at("fc1.weight").t());
    h = at::batch_norm(h, t.at("bn1.weight"), t.at("bn1.bias"), t.at("bn1.running_mean"), t.at("bn1.running_var"),
                       false, 0.1, 1e-5, false)
            .relu();
    h = at::addmm(t.at("fc2.bias"), h, t.at("fc2.weight").t());
    return at::batch_norm(h, {}, {}, t.at("bn2.running_mean"), t.at("bn2.running_var"), false, 0.1, 1e-5, false);
  }
};

BiasedHead biased_head(int64_t in, int64_t hidden, int64_t out) {
  torch::manual_seed(5);
  BiasedHead head;
  auto& t = head.tensors;
  t["fc1.weight"] = torch::randn({hidden, in}, torch::kFloat64) * 0.3;
  t["fc1.bias"] = torch::randn({hidden}, torch::kFloat64);
  t["bn1.weight"] = torch::rand({hidden}, torch::kFloat64) + 0.5;
  t["bn1.bias"] = torch::randn({hidden}, torch::kFloat64);
  t["bn1.running_mean"] = torch::randn({hidden}, torch::kFloat64);
  t["bn1.running_var"] = torch::rand({hidden}, torch::kFloat64) + 0.5;
  t["bn1.num_batches_tracked"] = torch::full({}, 7, torch::kInt64);
  t["fc2.weight"] = torch::randn({out, hidden}, torch::kFloat64) * 0.3;
  t["fc2.bias"] = torch::randn({out}, torch::kFloat64);
  t["bn2.running_mean"] = torch::randn({out}, torch::kFloat64);
  t["bn2.running_var"] = torch::rand({out}, torch::kFloat64) + 0.5;
  t["bn2.num_batches_tracked"] = torch::full({}, 7, torch::kInt64);
  return head;
}

TEST(Weights, HeadBiasesBeforeBatchNormFoldIntoTheRunningMean) {
  const BiasedHead theirs = biased_head(6, 8, 4);
  const auto x = torch::randn({5, 6}, torch::kFloat64);
  const auto expected = theirs.eval(x);

  // Inside a parent under a prefix, as in a whole model's checkpoint.
  torch::nn::Module parent;
  auto head = parent.register_module("img_head", ProjectionHead(6, 8, 4));
  EXPECT_FALSE(head->fc1->bias.defined());
  EXPECT_FALSE(head->fc2->bias.defined());
  std::map<std::string, torch::Tensor> checkpoint;
  for (const auto& [name, t] : theirs.tensors) checkpoint["img_head." + name] = t;
  const LoadReport report = load_weights(parent, checkpoint);
  EXPECT_TRUE(report.complete()) << report.summary();
  EXPECT_EQ(report.folded, (std::vector<std::string>{"img_head.fc1.bias into img_head.bn1.running_mean",
                                                     "img_head.fc2.bias into img_head.bn2.running_mean"}));
  head->eval();  // float32 weights from float64 tensors
  EXPECT_TRUE(test::Close(head->forward(x.to(torch::kFloat32)), expected, 1e-5));
  EXPECT_TRUE(torch::equal(head->bn1->running_mean,
                           (theirs.tensors.at("bn1.running_mean") - theirs.tensors.at("fc1.bias")).to(torch::kFloat32)));

  // In train mode the bias cancels against the batch mean: the same output.
  head->train();
  const auto& t = theirs.tensors;
  auto h = at::batch_norm(at::addmm(t.at("fc1.bias"), x, t.at("fc1.weight").t()), t.at("bn1.weight"), t.at("bn1.bias"),
                          {}, {}, true, 0.1, 1e-5, false)
               .relu();
  h = at::batch_norm(at::addmm(t.at("fc2.bias"), h, t.at("fc2.weight").t()), {}, {}, {}, {}, true, 0.1, 1e-5, false);
  EXPECT_TRUE(test::Close(head->forward(x.to(torch::kFloat32)), h, 1e-5));
}

}  // namespace
}  // namespace mgca::model
