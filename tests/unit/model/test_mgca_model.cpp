// The assembled MGCA and ConVIRT models (tiny shapes): the outputs the
// objectives rely on, and where gradients flow.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/model/mgca_model.h"
#include "mgca/model/module_cast.h"
#include "mgca/util/error.h"
#include "model_test_util.h"

namespace mgca::model {
namespace {

// A fake vocabulary: ids ≥ 20000 are '##' continuations, [SEP] = 102.
WordVocabulary vocabulary() {
  WordVocabulary v;
  v.continuation.assign(28996, 0);
  for (int64_t id = 20000; id < 28996; ++id) v.continuation[id] = 1;
  v.sep_id = 102;
  return v;
}

// Reports of 12 tokens: [CLS] words… [SEP] pads. Sample i has `lengths[i]` real tokens.
std::pair<torch::Tensor, torch::Tensor> reports(const std::vector<int64_t>& lengths, int64_t l = 12) {
  const int64_t b = static_cast<int64_t>(lengths.size());
  auto ids = torch::zeros({b, l}, torch::kLong), mask = torch::zeros({b, l}, torch::kLong);
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t t = 1; t + 1 < lengths[i]; ++t) ids[i][t] = (t % 3 == 2) ? 20000 + t : 1000 + 7 * t + i;
    ids[i][0] = 101;
    ids[i][lengths[i] - 1] = 102;
    mask[i].narrow(0, 0, lengths[i]).fill_(1);
  }
  return {ids, mask};
}

class MgcaModelTest : public ::testing::TestWithParam<ImageBackbone> {};

TEST_P(MgcaModelTest, OutputsHaveTheDocumentedShapesAndProperties) {
  torch::manual_seed(5);
  const auto config = MgcaModelConfig::tiny(GetParam());
  MgcaModel model(config, vocabulary());
  const auto [ids, mask] = reports({12, 7, 4});
  const auto images = torch::rand({3, 1, 64, 64});
  const auto out = model->forward(images, ids, mask);
  const int64_t p = model->image->num_patches(64), d = config.embed_dim;
  EXPECT_EQ(out.img_emb.sizes(), (std::vector<int64_t>{3, d}));
  EXPECT_EQ(out.report_emb.sizes(), (std::vector<int64_t>{3, d}));
  EXPECT_EQ(out.patch_emb.sizes(), (std::vector<int64_t>{3, p, d}));
  EXPECT_EQ(out.word_emb.sizes(), (std::vector<int64_t>{3, 11, d}));
  EXPECT_EQ(out.patch_weight.sizes(), (std::vector<int64_t>{3, p}));
  EXPECT_EQ(out.word_weight.sizes(), (std::vector<int64_t>{3, 11}));
  EXPECT_EQ(out.word_mask.scalar_type(), torch::kBool);
  for (const auto& e : {out.img_emb, out.report_emb, out.patch_emb, out.word_emb}) {
    EXPECT_TRUE(test::Close(e.norm(2, -1), torch::ones(e.sizes().slice(0, e.dim() - 1)), 1e-5));
    EXPECT_TRUE(e.requires_grad());
  }
  EXPECT_FALSE(out.word_weight.requires_grad());
  EXPECT_FALSE(out.patch_weight.requires_grad());
  // Ids at t % 3 == 2 are continuations. Sample 1 (7 tokens): [CLS] a ##b c d ##e [SEP]
  // → words [CLS], a##b, c, d##e, [SEP]: 4 non-pad word slots after [CLS].
  EXPECT_EQ(out.word_mask[1].logical_not().sum().item<int64_t>(), 4);
  // Pad words carry zero weight.
  EXPECT_EQ(out.word_weight.masked_select(out.word_mask).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(out.patch_weight_from_attention, GetParam() == ImageBackbone::ViT);
  if (GetParam() == ImageBackbone::ResNet) {
    EXPECT_TRUE(torch::allclose(out.patch_weight, torch::full({3, p}, 1.0 / p)));
  } else {
    EXPECT_TRUE((out.patch_weight.sum(1) < 1.0).all().item<bool>());  // the rest went to [CLS]
    EXPECT_TRUE((out.patch_weight > 0).all().item<bool>());
  }
}

// The freeze of the first epochs is the task's (tests/mpi/train, MgcaTask);
// here: normalize_ gives unit rows and every parameter gets a gradient.
TEST_P(MgcaModelTest, PrototypesNormalizeAndEveryParameterGetsAGradient) {
  torch::manual_seed(6);
  MgcaModel model(MgcaModelConfig::tiny(GetParam()), vocabulary());
  const auto [ids, mask] = reports({12, 9, 5, 6});
  const auto images = torch::rand({4, 1, 64, 64});
  model->prototypes->normalize_();
  EXPECT_TRUE(test::Close(model->prototypes->weight.norm(2, 1), torch::ones({32}), 1e-6));
  const auto out = model->forward(images, ids, mask);
  const auto scores = model->prototypes->forward(out.img_emb) + model->prototypes->forward(out.report_emb);
  (scores.square().sum() + (out.patch_emb.sum() * out.word_emb.sum())).backward();
  for (const auto& item : model->named_parameters()) {
    // The ViT's final LayerNorm bias feeds only Linear–BatchNorm: frozen (true gradient 0).
    if (item.key() == "image.norm.bias") {
      EXPECT_FALSE(item.value().requires_grad());
      continue;
    }
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
  }
}

INSTANTIATE_TEST_SUITE_P(Backbones, MgcaModelTest, ::testing::Values(ImageBackbone::ViT, ImageBackbone::ResNet),
                         [](const auto& info) { return info.param == ImageBackbone::ViT ? "ViT" : "ResNet"; });

TEST(MgcaModel, RejectsAVocabularyOfTheWrongSize) {
  const auto message = test::error_of([] {
    MgcaModel model(MgcaModelConfig::tiny(), WordVocabulary{std::vector<uint8_t>(100), 3});
  });
  EXPECT_NE(message.find("the tokenizer's vocabulary has 100 entries, BERT expects 28996"), std::string::npos)
      << message;
}

TEST(ConvirtModel, FrozenTextPrefixAndMaxPoolOverRealTokens) {
  torch::manual_seed(7);
  const auto config = ConvirtModelConfig::tiny();  // 4 BERT layers, embeddings + 2 frozen
  ConvirtModel model(config);
  const auto [ids, mask] = reports({12, 6});
  const auto out = model->forward(torch::rand({2, 1, 64, 64}), ids, mask);
  EXPECT_EQ(out.img_emb.sizes(), (std::vector<int64_t>{2, 64}));
  EXPECT_EQ(out.text_emb.sizes(), (std::vector<int64_t>{2, 64}));
  (out.img_emb.sum() * out.text_emb.sum()).backward();
  for (const auto& item : model->named_parameters()) {
    const auto& name = item.key();
    const bool frozen = name.rfind("text.embeddings.", 0) == 0 || name.rfind("text.layers.0.", 0) == 0 ||
                        name.rfind("text.layers.1.", 0) == 0;
    EXPECT_EQ(item.value().grad().defined(), !frozen) << name;
  }
  // Max-pool: over the real tokens only, so pad ids do not matter.
  model->eval();
  torch::NoGradGuard no_grad;
  const auto pooled = model->encode_text(ids, mask);
  const auto hidden = model->text->forward(ids, mask).hidden;
  EXPECT_TRUE(torch::equal(pooled[1], std::get<0>(hidden[1].narrow(0, 0, 6).max(0))));
  auto other_pads = ids.clone();
  other_pads[1].narrow(0, 6, 6).fill_(555);
  EXPECT_TRUE(test::Close(model->encode_text(other_pads, mask), pooled, 1e-6));
}


// libtorch's Module::to(dtype) would turn num_batches_tracked into a float and
// checkpoints would no longer load into a fresh model (the CI failure this
// guards against).
TEST(ModuleCast, FloatingTensorsTakeTheDtypeIntegerBuffersKeepTheirs) {
  MgcaModel model(MgcaModelConfig::tiny(ImageBackbone::ResNet), vocabulary());
  const auto before = model->parameters();
  int64_t integer_buffers = 0;
  for (const auto& item : model->named_buffers()) integer_buffers += !c10::isFloatingType(item.value().scalar_type());
  ASSERT_GT(integer_buffers, 0) << "the tiny model should have BatchNorm counters";

  to_device_and_dtype(*model, torch::kCPU, torch::kFloat64);
  for (const auto& item : model->named_parameters()) EXPECT_EQ(item.value().scalar_type(), torch::kFloat64) << item.key();
  for (const auto& item : model->named_buffers()) {
    const bool counter = item.key().find("num_batches_tracked") != std::string::npos;
    EXPECT_EQ(item.value().scalar_type(), counter ? torch::kLong : torch::kFloat64) << item.key();
  }
  const auto after = model->parameters();
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(before[i].is_same(after[i])) << "parameter " << i;

  EXPECT_THROW(to_device_and_dtype(*model, torch::kCPU, torch::kLong), mgca::Error);
}

}  // namespace
}  // namespace mgca::model
