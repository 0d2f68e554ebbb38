// Our objectives against an independent PyTorch reference
// (objectives_reference.py, run with the venv's Python) on random float64
// inputs with pad words, for both variants and both patch sources: covers
// what the golden files do not (variant "paper", ConVIRT, top-5 accuracy,
// larger shapes, S ≠ P). Tolerance 1e-10 relative (float64 on both sides).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "mgca/comm/communicator.h"
#include "mgca/io/safetensors.h"
#include "mgca/objectives/objectives.h"
#include "support/tensor_checks.h"
#include "support/test_support.h"

namespace mgca::objectives {
namespace {

using test::Close;

namespace F = torch::nn::functional;

struct Setting {
  Variant variant;
  bool vit;
};

class Reference : public ::testing::TestWithParam<Setting> {};

TEST_P(Reference, AllPartsAndGradients) {
  const auto [variant, vit] = GetParam();
  const int64_t b = 6, S = 9, P = 7, d = 16, K = 5;
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(vit ? 11 : 12);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto img_feat = torch::randn({b, d}, gen, f64);
  auto report_feat = torch::randn({b, d}, gen, f64);
  auto patch_feat = torch::randn({b, P, d}, gen, f64);
  auto word_feat = torch::randn({b, S, d}, gen, f64);
  auto proto_raw = torch::randn({K, d}, gen, f64);
  // Non-pad words per sample (at least one), weights 0 at pads, one word
  // weight 0 inside a report (as [SEP] gets), and ties.
  const int64_t lengths[b] = {9, 5, 1, 3, 8, 2};
  auto word_mask = torch::zeros({b, S}, torch::kBool);
  auto word_weight = torch::rand({b, S}, gen, f64) + 0.01;
  for (int64_t i = 0; i < b; ++i) {
    word_mask[i].slice(0, lengths[i]).fill_(true);
    word_weight[i].slice(0, lengths[i]).fill_(0.0);
  }
  word_weight[0][4] = 0.0;
  word_weight[4][1] = word_weight[4][2];
  auto patch_weight = torch::rand({b, P}, gen, f64);

  ObjectiveOptions opts;
  opts.set_variant(variant);
  opts.patches_from_vit = vit;
  opts.num_prototypes = K;
  opts.lambda_cta = 0.7;
  opts.lambda_cpa = 0.5;

  test::TempDir dir("objectives-ref");
  nlohmann::json settings = {{"variant", variant_name(variant)},
                             {"patches_from_vit", vit},
                             {"ita_temperature", opts.ita_temperature},
                             {"local_temperature", opts.local_temperature},
                             {"proto_temperature", opts.proto_temperature},
                             {"sinkhorn_epsilon", opts.sinkhorn_epsilon},
                             {"sinkhorn_iterations", opts.sinkhorn_iterations},
                             {"lambda_ita", opts.lambda_ita},
                             {"lambda_cta", opts.lambda_cta},
                             {"lambda_cpa", opts.lambda_cpa},
                             {"convirt_lambda", opts.convirt_lambda},
                             {"convirt_temperature", opts.convirt_temperature}};
  std::vector<std::pair<std::string, torch::Tensor>> inputs = {
      {"img_feat", img_feat},       {"report_feat", report_feat}, {"patch_feat", patch_feat},
      {"word_feat", word_feat},     {"proto_raw", proto_raw},     {"word_mask", word_mask},
      {"word_weight", word_weight}};
  if (vit) inputs.emplace_back("patch_weight", patch_weight);
  io::save_safetensors(dir / "in.safetensors", inputs, {{"settings", settings.dump()}});
  const auto script = test::source_dir() / "tests" / "unit" / "objectives" / "objectives_reference.py";
  const auto run = test::run_command(mgca::test::python() + " " + script.string() + " " + (dir / "in.safetensors").string() +
                                     " " + (dir / "out.safetensors").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  io::SafetensorsFile ref(dir / "out.safetensors");
  auto expect = [&](const torch::Tensor& ours, const std::string& name, double rtol = 1e-10) {
    auto r = ref.tensor(name);
    EXPECT_TRUE(Close(ours, r.reshape(ours.sizes()), rtol)) << name;
  };

  // Ours, as the trainer runs it.
  auto leaf = [](const torch::Tensor& t) { return t.clone().requires_grad_(true); };
  auto img_leaf = leaf(img_feat), rep_leaf = leaf(report_feat), patch_leaf = leaf(patch_feat),
       word_leaf = leaf(word_feat);
  auto proto = proto_raw.clone();
  normalize_prototypes_(proto);
  proto.requires_grad_(true);
  const auto norm = F::NormalizeFuncOptions().dim(-1);
  MgcaObjectiveInputs in;
  in.img_emb = F::normalize(img_leaf, norm);
  in.report_emb = F::normalize(rep_leaf, norm);
  in.patch_emb = F::normalize(patch_leaf, norm);
  in.word_emb = F::normalize(word_leaf, norm);
  in.word_weight = word_weight;
  in.word_mask = word_mask;
  if (vit) in.patch_weight = patch_weight;
  in.prototypes = proto;
  auto single = comm::Communicator::single();
  auto r = mgca_objective(in, opts, single);
  expect(r.ita.loss_i2t, "ita_i2t");
  expect(r.ita.loss_t2i, "ita_t2i");
  expect(r.ita.loss, "ita");
  expect(r.ita.acc1, "ita_acc1", 1e-6);
  expect(r.ita.acc5, "ita_acc5", 1e-6);
  expect(r.cta.loss_word_row, "word_row");
  expect(r.cta.loss_word_col, "word_col");
  expect(r.cta.loss_word, "word");
  expect(r.cta.loss_patch_row, "patch_row");
  expect(r.cta.loss_patch_col, "patch_col");
  expect(r.cta.loss_patch, "patch");
  expect(r.cta.loss, "cta");
  expect(r.cpa.codes_img, "codes_img");
  expect(r.cpa.codes_report, "codes_report");
  expect(r.cpa.loss_i2t, "cpa_i2t");
  expect(r.cpa.loss_t2i, "cpa_t2i");
  expect(r.cpa.loss, "cpa");
  expect(r.loss, "total");
  r.loss.backward();
  expect(img_leaf.grad(), "grad_img_feat");
  expect(rep_leaf.grad(), "grad_report_feat");
  expect(patch_leaf.grad(), "grad_patch_feat");
  expect(word_leaf.grad(), "grad_word_feat");
  expect(proto.grad(), "grad_proto");

  img_leaf.mutable_grad() = torch::Tensor();
  rep_leaf.mutable_grad() = torch::Tensor();
  auto c = convirt_loss(F::normalize(img_leaf, norm), F::normalize(rep_leaf, norm), opts, single);
  expect(c.loss, "convirt");
  c.loss.backward();
  expect(img_leaf.grad(), "convirt_grad_img_feat");
  expect(rep_leaf.grad(), "convirt_grad_report_feat");
}

INSTANTIATE_TEST_SUITE_P(Settings, Reference,
                         ::testing::Values(Setting{Variant::Official, true}, Setting{Variant::Official, false},
                                           Setting{Variant::Paper, true}, Setting{Variant::Paper, false}),
                         [](const auto& info) {
                           return std::string(variant_name(info.param.variant)) + (info.param.vit ? "_vit" : "_resnet");
                         });

}  // namespace
}  // namespace mgca::objectives
