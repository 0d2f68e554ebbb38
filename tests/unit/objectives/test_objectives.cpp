// Options, bad inputs, Sinkhorn against a host implementation of SwAV's
// form, numerical stability, weight clipping edge cases, the variant
// switches and reduced-precision inputs (world size 1).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/objectives/objectives.h"
#include "mgca/util/error.h"
#include "support/tensor_checks.h"
#include "support/test_support.h"

namespace mgca::objectives {
namespace {

using test::error_of;

namespace F = torch::nn::functional;

auto single() { return comm::Communicator::single(); }

torch::Generator gen(uint64_t seed) { return torch::make_generator<at::CPUGeneratorImpl>(seed); }

torch::Tensor unit_rows(torch::IntArrayRef shape, uint64_t seed, torch::ScalarType type = torch::kFloat) {
  return F::normalize(torch::randn(shape, gen(seed), torch::kFloat64), F::NormalizeFuncOptions().dim(-1)).to(type);
}

#define EXPECT_ERROR(stmt, needle)                                    \
  do {                                                                \
    const std::string msg = error_of([&] { stmt; });                  \
    EXPECT_NE(msg.find(needle), std::string::npos) << "error: " << msg; \
  } while (0)

// ---------------------------------------------------------------- options

TEST(Options, DefaultsAreTheOfficialRun) {
  ObjectiveOptions o;
  EXPECT_EQ(o.variant, Variant::Official);
  EXPECT_DOUBLE_EQ(o.ita_temperature, 0.07);
  EXPECT_DOUBLE_EQ(o.local_temperature, 0.1);
  EXPECT_DOUBLE_EQ(o.proto_temperature, 0.2);
  EXPECT_DOUBLE_EQ(o.sinkhorn_epsilon, 0.05);
  EXPECT_EQ(o.sinkhorn_iterations, 3);
  EXPECT_EQ(o.num_prototypes, 500);
  EXPECT_EQ(o.freeze_prototypes_epochs, 1);
  EXPECT_DOUBLE_EQ(o.lambda_ita + o.lambda_cta + o.lambda_cpa, 3.0);
  EXPECT_DOUBLE_EQ(o.convirt_lambda, 0.75);
  EXPECT_DOUBLE_EQ(o.convirt_temperature, 0.1);
  EXPECT_TRUE(o.quirk_pad_words_in_softmax && o.quirk_cls_attention_off_by_one &&
              o.quirk_vit_patch_output_unnormalized && o.ita_sum_directions && o.cta_sum_parts);
  EXPECT_NO_THROW(o.validate());
}

TEST(Options, VariantSetsAllFiveSwitches) {
  auto p = ObjectiveOptions::paper();
  EXPECT_EQ(p.variant, Variant::Paper);
  EXPECT_FALSE(p.quirk_pad_words_in_softmax || p.quirk_cls_attention_off_by_one ||
               p.quirk_vit_patch_output_unnormalized || p.ita_sum_directions || p.cta_sum_parts);
  p.set_variant(Variant::Official);
  EXPECT_TRUE(p.quirk_pad_words_in_softmax && p.quirk_cls_attention_off_by_one &&
              p.quirk_vit_patch_output_unnormalized && p.ita_sum_directions && p.cta_sum_parts);
  EXPECT_EQ(parse_variant("paper"), Variant::Paper);
  EXPECT_EQ(parse_variant("official"), Variant::Official);
  EXPECT_STREQ(variant_name(Variant::Paper), "paper");
  EXPECT_ERROR(parse_variant("Official"), "unknown value 'Official'");
}

TEST(Options, ValidateNamesTheKey) {
  auto bad = [](auto mutate, const char* key) {
    ObjectiveOptions o;
    mutate(o);
    EXPECT_ERROR(o.validate(), key);
  };
  bad([](auto& o) { o.ita_temperature = 0; }, "objectives.ita_temperature: 0 must be > 0");
  bad([](auto& o) { o.local_temperature = -1; }, "objectives.local_temperature: -1 must be > 0");
  bad([](auto& o) { o.proto_temperature = std::nan(""); }, "objectives.proto_temperature");
  bad([](auto& o) { o.sinkhorn_epsilon = 0; }, "objectives.sinkhorn_epsilon");
  bad([](auto& o) { o.sinkhorn_iterations = 0; }, "objectives.sinkhorn_iterations: 0 must be >= 1");
  bad([](auto& o) { o.num_prototypes = 0; }, "objectives.num_prototypes");
  bad([](auto& o) { o.weight_quantile_low = 0.95; }, "objectives.weight_quantile_low: need low (0.95) <= ");
  bad([](auto& o) { o.weight_quantile_high = 1.5; }, "objectives.weight_quantile_high: 1.5 must be in [0, 1]");
  bad([](auto& o) { o.lambda_cpa = INFINITY; }, "objectives.lambda_cpa");
  bad([](auto& o) { o.lambda_ita = -1; }, "objectives.lambda_ita: -1 must be >= 0");
  bad([](auto& o) { o.convirt_lambda = 1.5; }, "objectives.convirt_lambda");
  bad([](auto& o) { o.ita_tile = 0; }, "objectives.ita_tile");
  bad([](auto& o) { o.freeze_prototypes_epochs = -1; }, "objectives.freeze_prototypes_epochs");
}

// ---------------------------------------------------------------- bad inputs

TEST(BadInput, InstanceAlignment) {
  ObjectiveOptions o;
  auto a = unit_rows({4, 8}, 1);
  EXPECT_ERROR(instance_alignment(a, unit_rows({4, 6}, 2), o, single()), "img [4, 8] and txt [4, 6]");
  EXPECT_ERROR(instance_alignment(a, unit_rows({5, 8}, 2), o, single()), "same shape");
  EXPECT_ERROR(instance_alignment(a.flatten(), a, o, single()), "tensor 'img' must have 2 dimensions");
  EXPECT_ERROR(instance_alignment(a, a.to(torch::kDouble), o, single()), "'img' is Float but 'txt' is Double");
  EXPECT_ERROR(instance_alignment(a, a.to(torch::kLong), o, single()), "'txt' must be floating point");
  EXPECT_ERROR(instance_alignment(a.slice(0, 0, 0), a.slice(0, 0, 0), o, single()), "empty batch");
  EXPECT_ERROR(instance_alignment(a, torch::Tensor(), o, single()), "'txt' is undefined");
  EXPECT_ERROR(convirt_loss(a, a, o, nullptr), "convirt_loss: no communicator");
  auto cold = o;
  cold.ita_temperature = 0;
  EXPECT_ERROR(instance_alignment(a, a, cold, single()), "instance_alignment: temperature must be > 0");
}

TEST(BadInput, TokenAlignment) {
  ObjectiveOptions o;
  auto w = unit_rows({2, 5, 8}, 1), p = unit_rows({2, 3, 8}, 2);
  auto ww = torch::rand({2, 5});
  auto mask = torch::zeros({2, 5}, torch::kBool);
  auto pw = torch::rand({2, 3});
  EXPECT_NO_THROW(token_alignment(w, ww, mask, p, pw, o));
  EXPECT_ERROR(token_alignment(w, ww, mask, unit_rows({3, 3, 8}, 2), pw, o), "patch_emb [3, 3, 8] does not match");
  EXPECT_ERROR(token_alignment(w, ww, mask, unit_rows({2, 3, 4}, 2), pw, o), "expected [2, P, 8]");
  EXPECT_ERROR(token_alignment(w, torch::rand({2, 4}), mask, p, pw, o), "word_weight [2, 4] must be [2, 5]");
  EXPECT_ERROR(token_alignment(w, ww, mask.to(torch::kFloat), p, pw, o), "word_mask must be a bool tensor");
  EXPECT_ERROR(token_alignment(w, ww, mask.slice(1, 0, 4), p, pw, o), "word_mask [2, 4] must be [2, 5]");
  EXPECT_ERROR(token_alignment(w, ww, mask, p, torch::rand({2, 4}), o), "patch_weight [2, 4] must be [2, 3]");
  EXPECT_ERROR(token_alignment(w.flatten(1), ww, mask, p, pw, o), "'word_emb' must have 3 dimensions");
  EXPECT_ERROR(clip_and_normalize_weights(ww, 0.9, 0.1, true), "0 <= low <= high <= 1");
}

TEST(BadInput, PrototypeAlignmentAndSinkhorn) {
  ObjectiveOptions o;
  o.num_prototypes = 6;
  auto v = unit_rows({4, 8}, 1), t = unit_rows({4, 8}, 2);
  EXPECT_NO_THROW(prototype_alignment(v, t, unit_rows({6, 8}, 3), o, single()));
  EXPECT_ERROR(prototype_alignment(v, t, unit_rows({5, 8}, 3), o, single()),
               "hold 5 rows but model.num_prototypes is 6");
  EXPECT_ERROR(prototype_alignment(v, t, unit_rows({6, 7}, 3), o, single()), "must be [K, 8]");
  EXPECT_ERROR(prototype_alignment(v, t, unit_rows({6, 8}, 3, torch::kDouble), o, single()),
               "'img' is Float but 'prototypes' is Double");
  auto s = torch::rand({4, 6});
  EXPECT_ERROR(sinkhorn(s, 0.0, 3, single()), "epsilon must be > 0");
  EXPECT_ERROR(sinkhorn(s, 0.05, 0, single()), "iterations must be >= 1");
  EXPECT_ERROR(sinkhorn(s.flatten(), 0.05, 3, single()), "scores must be [b, K] or [G, b, K], got [24]");
  EXPECT_ERROR(sinkhorn(s.to(torch::kInt), 0.05, 3, single()), "floating point");
  MgcaObjectiveInputs in;
  in.img_emb = v;
  in.patch_emb = unit_rows({3, 2, 8}, 4);
  EXPECT_ERROR(mgca_objective(in, o, single()), "patch_emb [3, 2, 8] and img_emb [4, 8] disagree");
}

TEST(BadInput, SecondBackwardThroughTheFusedContrastiveLoss) {
  // The fused cross-entropy reuses its logits for the gradient: a second
  // backward through the same graph must fail loudly, not compute garbage.
  auto v = unit_rows({4, 8}, 1).requires_grad_(true), t = unit_rows({4, 8}, 2).requires_grad_(true);
  auto r = instance_alignment(v, t, ObjectiveOptions(), single());
  r.loss.backward({}, /*retain_graph=*/true);
  std::string msg;
  try {
    r.loss.backward();
  } catch (const std::exception& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("retain_graph is not supported"), std::string::npos) << msg;
}

// ---------------------------------------------------------------- Sinkhorn

// SwAV's non-distributed form written out on the host in double, with its
// constants and without any shift: Q = exp(s/ε)ᵀ, Q /= ΣQ, then `iters`
// times rows ×(1/K)/u and columns ×(1/B)/colsum; finally Q / colsum.
std::vector<double> host_sinkhorn(const std::vector<double>& s, int64_t b, int64_t k, double eps, int iters) {
  std::vector<double> q(b * k);  // q[i*k + j] = Q[j][i]
  double total = 0;
  for (int64_t i = 0; i < b * k; ++i) total += q[i] = std::exp(s[i] / eps);
  for (auto& x : q) x /= total;
  auto col_sum = [&](int64_t i) {
    double c = 0;
    for (int64_t j = 0; j < k; ++j) c += q[i * k + j];
    return c;
  };
  for (int it = 0; it < iters; ++it) {
    for (int64_t j = 0; j < k; ++j) {
      double u = 0;
      for (int64_t i = 0; i < b; ++i) u += q[i * k + j];
      for (int64_t i = 0; i < b; ++i) q[i * k + j] *= (1.0 / k) / u;
    }
    for (int64_t i = 0; i < b; ++i) {
      const double c = col_sum(i);
      for (int64_t j = 0; j < k; ++j) q[i * k + j] *= (1.0 / b) / c;
    }
  }
  for (int64_t i = 0; i < b; ++i) {
    const double c = col_sum(i);
    for (int64_t j = 0; j < k; ++j) q[i * k + j] /= c;
  }
  return q;
}

TEST(Sinkhorn, MatchesSwavFormOnTheHost) {
  const int64_t b = 7, k = 5;
  auto scores = torch::rand({b, k}, gen(3), torch::kFloat64) * 2 - 1;  // like cosine scores
  std::vector<double> s(scores.data_ptr<double>(), scores.data_ptr<double>() + b * k);
  for (int iters : {1, 3, 10}) {
    auto expected = torch::tensor(host_sinkhorn(s, b, k, 0.05, iters), torch::kFloat64).reshape({b, k});
    EXPECT_TRUE(test::AllClose(sinkhorn(scores, 0.05, iters, single()), expected, 1e-12, 1e-15)) << iters;
    EXPECT_TRUE(test::AllClose(sinkhorn(scores.to(torch::kFloat), 0.05, iters, single()), expected, 1e-5, 1e-7))
        << iters;
  }
}

TEST(Sinkhorn, RowsSumToOneAndMarginalsBalanceWithIterations) {
  const int64_t b = 64, k = 10;
  auto scores = F::normalize(torch::randn({b, 16}, gen(4)), F::NormalizeFuncOptions().dim(1))
                    .mm(F::normalize(torch::randn({k, 16}, gen(5)), F::NormalizeFuncOptions().dim(1)).t());
  double previous = INFINITY;
  for (int iters : {1, 3, 10, 100}) {
    auto q = sinkhorn(scores, 0.05, iters, single());
    EXPECT_TRUE(test::AllClose(q.sum(1), torch::ones({b}), 1e-6)) << iters;
    // Prototype marginals: Σ_i q_ik → b/K; the imbalance shrinks with iterations.
    const double imbalance = (q.sum(0) / (double(b) / k) - 1).abs().max().item<double>();
    EXPECT_LT(imbalance, previous) << iters;
    previous = imbalance;
    if (iters == 100) {
      EXPECT_LT(imbalance, 1e-4);
    }
  }
}

TEST(Sinkhorn, NoInfOrNanAtTheExtremes) {
  // Scores exactly ±1 with ε = 0.05 (exp(±20)), and ε = 0.01 where the
  // unshifted exp(100) overflows float32.
  const int64_t b = 32, k = 12;
  auto sign = torch::rand({b, k}, gen(6)).gt(0.5).to(torch::kFloat) * 2 - 1;
  ASSERT_TRUE(torch::exp(sign / 0.01).isinf().any().item<bool>()) << "the naive form must overflow here";
  for (double eps : {0.05, 0.01}) {
    for (auto type : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
      auto q = sinkhorn(sign.to(type), eps, 3, single());
      EXPECT_EQ(q.scalar_type(), torch::kFloat) << "codes are float32 even for reduced precision";
      EXPECT_TRUE(q.isfinite().all().item<bool>()) << eps << " " << c10::toString(type);
      EXPECT_TRUE(test::AllClose(q.sum(1), torch::ones({b}), 1e-5)) << eps;
      EXPECT_TRUE(test::AllClose(q, sinkhorn(sign, eps, 3, single()), 1e-6, 1e-9));
    }
  }
  // A prototype no sample comes near (unnormalized scores): its row would
  // underflow with a single global shift; each row's own max keeps it alive.
  auto far = torch::rand({b, k}, gen(7)) * 2 - 1;
  far.select(1, 0).sub_(50.0);
  auto q = sinkhorn(far, 0.05, 3, single());
  EXPECT_TRUE(q.isfinite().all().item<bool>());
  EXPECT_GT(q.select(1, 0).sum().item<double>(), 0.0);
  // bf16 scores: the codes equal float32 codes of the same (rounded) values.
  auto bf = (torch::rand({b, k}, gen(8)) * 2 - 1).to(torch::kBFloat16);
  EXPECT_TRUE(test::AllClose(sinkhorn(bf, 0.05, 3, single()), sinkhorn(bf.to(torch::kFloat), 0.05, 3, single()), 0, 0));
}

// ---------------------------------------------------------------- weights

// torch.quantile's linear rule on the host.
double host_quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double rank = q * (v.size() - 1);
  const auto lo = static_cast<size_t>(rank);
  const auto hi = static_cast<size_t>(std::ceil(rank));
  return v[lo] + (v[hi] - v[lo]) * (rank - lo);
}

TEST(Weights, ClipToQuantilesOfNonZeroEntriesAndNormalize) {
  auto w = torch::rand({5, 11}, gen(9), torch::kFloat64);
  w[1].slice(0, 6).zero_();  // padding
  w[2][3] = 0.0;             // a zero inside
  w[3].zero_();              // nothing: contributes 0
  w[4].slice(0, 1).zero_();  // only one entry
  w[4][0] = 0.3;
  for (bool nonzero_only : {true, false}) {
    auto got = clip_and_normalize_weights(w, 0.1, 0.9, nonzero_only);
    for (int64_t i = 0; i < 5; ++i) {
      std::vector<double> row(w[i].data_ptr<double>(), w[i].data_ptr<double>() + 11), set;
      for (double x : row) {
        if (!nonzero_only || x != 0) set.push_back(x);
      }
      std::vector<double> expected(11, 0.0);
      double sum = 0;
      if (!set.empty()) {
        const double lo = host_quantile(set, 0.1), hi = host_quantile(set, 0.9);
        for (int j = 0; j < 11; ++j) {
          if (!nonzero_only || row[j] != 0) sum += expected[j] = std::clamp(row[j], lo, hi);
        }
      }
      for (auto& x : expected) x = sum > 0 ? x / sum : 0.0;
      EXPECT_TRUE(test::AllClose(got[i], torch::tensor(expected, torch::kFloat64), 1e-14, 1e-16))
          << "row " << i << " nonzero_only " << nonzero_only;
    }
  }
  auto got = clip_and_normalize_weights(w, 0.1, 0.9, true);
  EXPECT_EQ(got[3].abs().sum().item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(got[4][0].item<double>(), 1.0);
  EXPECT_EQ(clip_and_normalize_weights(w.to(torch::kBFloat16), 0.1, 0.9, true).scalar_type(), torch::kBFloat16);
}

// ---------------------------------------------------------------- variants

struct TokenData {
  torch::Tensor word, patch, word_weight, word_mask, patch_weight;
};

TokenData token_data(int64_t b, int64_t S, int64_t P, int64_t d, bool with_pads, torch::ScalarType type) {
  TokenData t;
  t.word = unit_rows({b, S, d}, 20, type);
  t.patch = unit_rows({b, P, d}, 21, type);
  t.word_weight = torch::rand({b, S}, gen(22)) + 0.01;
  t.word_mask = torch::zeros({b, S}, torch::kBool);
  if (with_pads) {
    for (int64_t i = 0; i < b; ++i) {
      const int64_t len = 1 + i % S;
      t.word_mask[i].slice(0, len).fill_(true);
      t.word_weight[i].slice(0, len).zero_();
    }
  }
  t.patch_weight = torch::rand({b, P}, gen(23));
  return t;
}

TEST(Variants, PadQuirkMattersOnlyWithPads) {
  auto official = ObjectiveOptions::official(), paper = ObjectiveOptions::paper();
  paper.quirk_vit_patch_output_unnormalized = official.quirk_vit_patch_output_unnormalized;
  for (bool pads : {false, true}) {
    auto t = token_data(4, 6, 5, 8, pads, torch::kFloat64);
    auto a = token_alignment(t.word, t.word_weight, t.word_mask, t.patch, t.patch_weight, official);
    auto b = token_alignment(t.word, t.word_weight, t.word_mask, t.patch, t.patch_weight, paper);
    EXPECT_TRUE(test::AllClose(b.loss_patch, a.loss_patch, 1e-14));
    EXPECT_EQ(static_cast<bool>(test::AllClose(b.loss, 0.5 * a.loss, 1e-14)), !pads) << "pads " << pads;
    // Removing pads from the denominators can only lower each cross-entropy.
    if (pads) {
      EXPECT_LT(b.loss_word_row.item<double>(), a.loss_word_row.item<double>());
      EXPECT_LT(b.loss_word_col.item<double>(), a.loss_word_col.item<double>());
    }
  }
}

TEST(Variants, PatchOutputNormalizationQuirk) {
  auto t = token_data(3, 5, 4, 8, true, torch::kFloat64);
  for (bool vit : {true, false}) {
    for (bool quirk : {true, false}) {
      ObjectiveOptions o;
      o.patches_from_vit = vit;
      o.quirk_vit_patch_output_unnormalized = quirk;
      CtaTrace trace;
      token_alignment(t.word, t.word_weight, t.word_mask, t.patch, t.patch_weight, o, &trace);
      auto norms = trace.patch_attention_output.norm(2, -1);
      const bool normalized = static_cast<bool>(test::AllClose(norms, torch::ones_like(norms), 1e-12));
      EXPECT_EQ(normalized, !(vit && quirk)) << "vit " << vit << " quirk " << quirk;
    }
  }
}

TEST(Variants, ItaPaperIsHalfTheOfficialSum) {
  auto v = unit_rows({6, 8}, 30, torch::kFloat64), t = unit_rows({6, 8}, 31, torch::kFloat64);
  auto a = instance_alignment(v, t, ObjectiveOptions::official(), single());
  auto b = instance_alignment(v, t, ObjectiveOptions::paper(), single());
  EXPECT_TRUE(test::AllClose(a.loss, a.loss_i2t + a.loss_t2i, 1e-15));
  EXPECT_TRUE(test::AllClose(b.loss, 0.5 * a.loss, 1e-15));
  auto c = convirt_loss(v, t, ObjectiveOptions(), single());
  EXPECT_TRUE(test::AllClose(c.loss, 0.75 * c.loss_i2t + 0.25 * c.loss_t2i, 1e-15));
}

TEST(Variants, AllPadSampleStaysFinite) {
  for (auto o : {ObjectiveOptions::official(), ObjectiveOptions::paper()}) {
    auto t = token_data(3, 5, 4, 8, true, torch::kFloat64);
    t.word_mask[1].fill_(true);
    t.word_weight[1].zero_();
    auto w = t.word.clone().requires_grad_(true);
    auto r = token_alignment(w, t.word_weight, t.word_mask, t.patch, t.patch_weight, o);
    r.loss.backward();
    EXPECT_TRUE(r.loss.isfinite().item<bool>());
    EXPECT_TRUE(w.grad().isfinite().all().item<bool>());
  }
}

TEST(Variants, UniformPatchWeightsWhenNoneAreGiven) {
  auto t = token_data(3, 5, 4, 8, true, torch::kFloat64);
  CtaTrace trace;
  ObjectiveOptions o;
  o.patches_from_vit = false;
  token_alignment(t.word, t.word_weight, t.word_mask, t.patch, torch::Tensor(), o, &trace);
  EXPECT_TRUE(test::AllClose(trace.patch_weights, torch::full({3, 4}, 0.25, torch::kFloat64), 0, 0));
}

// ---------------------------------------------------------------- precision

TEST(Precision, ReducedPrecisionInputsAreEvaluatedInFloat32) {
  // bf16 inputs give the float32 result of the same (rounded) values, and
  // the gradients come back in bf16.
  const int64_t b = 4, S = 6, P = 5, d = 8, K = 7;
  auto t = token_data(b, S, P, d, true, torch::kBFloat16);
  MgcaObjectiveInputs in;
  in.img_emb = unit_rows({b, d}, 40, torch::kBFloat16).requires_grad_(true);
  in.report_emb = unit_rows({b, d}, 41, torch::kBFloat16).requires_grad_(true);
  in.patch_emb = t.patch.clone().requires_grad_(true);
  in.word_emb = t.word.clone().requires_grad_(true);
  in.word_weight = t.word_weight;
  in.word_mask = t.word_mask;
  in.patch_weight = t.patch_weight;
  in.prototypes = unit_rows({K, d}, 42, torch::kBFloat16).requires_grad_(true);
  ObjectiveOptions o;
  o.num_prototypes = K;
  auto r = mgca_objective(in, o, single());
  EXPECT_EQ(r.loss.scalar_type(), torch::kFloat);
  r.loss.backward();
  EXPECT_EQ(in.img_emb.grad().scalar_type(), torch::kBFloat16);
  EXPECT_EQ(in.prototypes.grad().scalar_type(), torch::kBFloat16);

  MgcaObjectiveInputs f = in;
  for (auto* p : {&f.img_emb, &f.report_emb, &f.patch_emb, &f.word_emb, &f.prototypes}) {
    *p = p->detach().to(torch::kFloat).requires_grad_(true);
  }
  auto rf = mgca_objective(f, o, single());
  EXPECT_TRUE(test::AllClose(r.loss, rf.loss, 1e-6));
  EXPECT_TRUE(test::AllClose(r.ita.loss, rf.ita.loss, 1e-6));
  EXPECT_TRUE(test::AllClose(r.cta.loss, rf.cta.loss, 1e-6));
  EXPECT_TRUE(test::AllClose(r.cpa.loss, rf.cpa.loss, 1e-6));
  rf.loss.backward();
  // bf16 keeps 8 bits: the gradient is the float32 one up to rounding of
  // the per-path contributions (summed in bf16).
  auto g = f.img_emb.grad();
  EXPECT_TRUE(test::AllClose(in.img_emb.grad(), g, 2e-2, 2e-2 * g.abs().max().item<double>()));
}

TEST(Prototypes, NormalizeInPlaceWithoutGrad) {
  auto w = (torch::randn({5, 8}, gen(50)) * 3).requires_grad_(true);
  const auto version = w._version();
  normalize_prototypes_(w);
  EXPECT_GT(w._version(), version);
  EXPECT_FALSE(w.grad_fn());
  EXPECT_TRUE(test::AllClose(w.detach().norm(2, 1), torch::ones({5}), 1e-6));
  EXPECT_TRUE(w.is_leaf() && w.requires_grad());
}

}  // namespace
}  // namespace mgca::objectives
