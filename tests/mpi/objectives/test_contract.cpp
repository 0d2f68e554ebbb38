// The distributed contract of the objectives (docs/contract.md §2.6, objectives.h) under
// mpirun -np 1, 2, 4: every rank builds the same global batch, runs the
// objective on its own rows with the world communicator, and compares with
// the single-process computation over the whole batch (Communicator::single(),
// on every rank):
//   losses (every part, accuracies): mean over ranks == single;
//   gradient w.r.t. the rank's own input rows == W × the single gradient rows;
//   prototype gradient, mean over ranks == single;
//   Sinkhorn codes of the rank's rows == the single codes' rows.
// Tolerance: 1e-5 relative in float32 (1e-10 in float64), with the tensor's
// largest magnitude as the floor for elements near zero.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>

#include "mgca/comm/communicator.h"
#include "mgca/objectives/objectives.h"
#include "support/tensor_checks.h"
#include "support/world.h"

namespace mgca::objectives {
namespace {

using test::world;

using test::Close;

namespace F = torch::nn::functional;
using comm::Communicator;
using comm::ReduceOp;

enum class Data { Random, Duplicated, LargeLogits };
const char* data_name(Data d) {
  return d == Data::Random ? "random" : d == Data::Duplicated ? "duplicated" : "large_logits";
}

// The global batch, raw (before normalization), identical on every rank.
struct Batch {
  torch::Tensor img, rep, patch, word, word_weight, word_mask, patch_weight, proto_raw;
  double scale = 1.0;  // applied to the normalized embeddings (large logits)
};

Batch make_batch(int64_t N, int64_t S, int64_t P, int64_t d, int64_t K, Data kind, torch::ScalarType type) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(1234 + N);
  auto randn = [&](std::vector<int64_t> shape) { return torch::randn(shape, gen, torch::kFloat64); };
  Batch g;
  g.img = randn({N, d});
  g.rep = randn({N, d});
  g.patch = randn({N, P, d});
  g.word = randn({N, S, d});
  g.proto_raw = randn({K, d});
  g.word_weight = torch::rand({N, S}, gen, torch::kFloat64) + 0.01;
  g.word_mask = torch::zeros({N, S}, torch::kBool);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t len = 1 + (i * 5) % S;  // 1..S words, pads after
    g.word_mask[i].slice(0, len).fill_(true);
    g.word_weight[i].slice(0, len).zero_();
  }
  g.patch_weight = torch::rand({N, P}, gen, torch::kFloat64);
  if (kind == Data::Duplicated) {
    // Rows repeat with period 3 (across rank boundaries), a report equal to
    // another sample's image, two equal prototypes, equal patches.
    auto idx = torch::arange(N) % 3;
    g.img = g.img.index_select(0, idx);
    g.rep = g.rep.index_select(0, idx);
    g.rep[0] = g.img[1];
    g.patch = g.patch.index_select(0, idx);
    g.patch.select(1, 1).copy_(g.patch.select(1, 0));
    g.word = g.word.index_select(0, idx);
    g.proto_raw[1] = g.proto_raw[0];
  }
  if (kind == Data::LargeLogits) g.scale = 6.0;  // ITA logits up to 36/0.07 ≈ 514
  for (auto* t : {&g.img, &g.rep, &g.patch, &g.word, &g.proto_raw, &g.word_weight, &g.patch_weight}) {
    *t = t->to(type);
  }
  return g;
}

// One run of the objective on rows [begin, begin + count) of the batch.
struct Outcome {
  std::map<std::string, torch::Tensor> losses;  // 0-dim
  std::map<std::string, torch::Tensor> rows;     // per-row outputs (codes)
  std::map<std::string, torch::Tensor> grads;    // inputs (per row) and "proto"
};

enum class Objective { Mgca, Convirt };

Outcome run(const Batch& g, int64_t begin, int64_t count, const ObjectiveOptions& opts, Objective which,
            bool vit, const std::shared_ptr<Communicator>& comm) {
  auto leaf = [&](const torch::Tensor& t) { return t.narrow(0, begin, count).clone().requires_grad_(true); };
  auto img = leaf(g.img), rep = leaf(g.rep), patch = leaf(g.patch), word = leaf(g.word);
  auto proto = g.proto_raw.clone();
  normalize_prototypes_(proto);
  proto.requires_grad_(true);
  const auto norm = F::NormalizeFuncOptions().dim(-1);
  Outcome o;
  torch::Tensor loss;
  if (which == Objective::Convirt) {
    auto r = convirt_loss(F::normalize(img, norm) * g.scale, F::normalize(rep, norm) * g.scale, opts, comm);
    o.losses = {{"loss", r.loss}, {"i2t", r.loss_i2t}, {"t2i", r.loss_t2i}, {"acc1", r.acc1}, {"acc5", r.acc5}};
    loss = r.loss;
  } else {
    MgcaObjectiveInputs in;
    in.img_emb = F::normalize(img, norm) * g.scale;
    in.report_emb = F::normalize(rep, norm) * g.scale;
    in.patch_emb = F::normalize(patch, norm) * g.scale;
    in.word_emb = F::normalize(word, norm) * g.scale;
    in.word_weight = g.word_weight.narrow(0, begin, count);
    in.word_mask = g.word_mask.narrow(0, begin, count);
    if (vit) in.patch_weight = g.patch_weight.narrow(0, begin, count);
    in.prototypes = proto;
    auto r = mgca_objective(in, opts, comm);
    o.losses = {{"loss", r.loss},
                {"ita", r.ita.loss},
                {"ita_i2t", r.ita.loss_i2t},
                {"ita_t2i", r.ita.loss_t2i},
                {"acc1", r.ita.acc1},
                {"acc5", r.ita.acc5},
                {"acc1_t2i", r.ita.acc1_t2i},
                {"acc5_t2i", r.ita.acc5_t2i},
                {"cta", r.cta.loss},
                {"word", r.cta.loss_word},
                {"word_row", r.cta.loss_word_row},
                {"word_col", r.cta.loss_word_col},
                {"patch", r.cta.loss_patch},
                {"patch_row", r.cta.loss_patch_row},
                {"patch_col", r.cta.loss_patch_col},
                {"cpa", r.cpa.loss},
                {"cpa_i2t", r.cpa.loss_i2t},
                {"cpa_t2i", r.cpa.loss_t2i}};
    o.rows = {{"codes_img", r.cpa.codes_img}, {"codes_report", r.cpa.codes_report}};
    loss = r.loss;
  }
  loss.backward();
  o.grads = {{"img", img.grad()}, {"rep", rep.grad()}};
  if (which == Objective::Mgca) {
    o.grads["patch"] = patch.grad();
    o.grads["word"] = word.grad();
    o.grads["proto"] = proto.grad();
  }
  return o;
}

struct Case {
  Variant variant;
  Data data;
  bool vit;
  torch::ScalarType type;
  int64_t per_rank;  // 0: global N = 8 split over the ranks; else b per rank (N = W·b)
};

std::string describe(const Case& c) {
  return std::string(variant_name(c.variant)) + "_" + data_name(c.data) + (c.vit ? "_vit" : "_resnet") +
         (c.type == torch::kDouble ? "_f64" : "_f32") + (c.per_rank ? "_b" + std::to_string(c.per_rank) : "_N8");
}
std::string case_name(const ::testing::TestParamInfo<Case>& info) { return describe(info.param); }
void PrintTo(const Case& c, std::ostream* os) { *os << describe(c); }

class Contract : public ::testing::TestWithParam<Case> {
 protected:
  void check(Objective which) {
    const auto& c = GetParam();
    auto comm = world();
    const int64_t W = comm->size(), r = comm->rank();
    const int64_t N = c.per_rank ? c.per_rank * W : 8;
    const int64_t b = N / W;
    const int64_t K = 5;
    const double rtol = c.type == torch::kDouble ? 1e-10 : 1e-5;
    auto g = make_batch(N, 7, 6, 16, K, c.data, c.type);
    ObjectiveOptions opts;
    opts.set_variant(c.variant);
    opts.patches_from_vit = c.vit;
    opts.num_prototypes = K;

    auto single = run(g, 0, N, opts, which, c.vit, Communicator::single());
    auto mine = run(g, r * b, b, opts, which, c.vit, comm);

    for (const auto& [name, value] : single.losses) {
      // Ties (duplicated rows) make top-k order depend on rounding: skip accuracies there.
      if (c.data == Data::Duplicated && name.rfind("acc", 0) == 0) continue;
      auto mean = mine.losses.at(name).detach().to(torch::kDouble).clone();
      comm->all_reduce(mean, ReduceOp::Avg);
      EXPECT_TRUE(Close(mean, value.detach().to(torch::kDouble), rtol)) << "loss " << name;
    }
    for (const auto& [name, value] : single.rows) {
      EXPECT_TRUE(Close(mine.rows.at(name), value.narrow(0, r * b, b), rtol)) << name;
    }
    for (const auto& [name, value] : single.grads) {
      if (name == "proto") {
        auto mean = mine.grads.at(name).clone();
        comm->all_reduce(mean, ReduceOp::Avg);
        EXPECT_TRUE(Close(mean, value, rtol)) << "mean over ranks of grad " << name;
      } else {
        EXPECT_TRUE(Close(mine.grads.at(name), value.narrow(0, r * b, b) * static_cast<double>(W), rtol))
            << "grad " << name << " (W × single rows)";
      }
    }
  }
};

TEST_P(Contract, Mgca) { check(Objective::Mgca); }
TEST_P(Contract, Convirt) { check(Objective::Convirt); }

INSTANTIATE_TEST_SUITE_P(
    Cases, Contract,
    ::testing::Values(Case{Variant::Official, Data::Random, true, torch::kFloat, 0},
                      Case{Variant::Official, Data::Random, false, torch::kFloat, 0},
                      Case{Variant::Paper, Data::Random, true, torch::kFloat, 0},
                      Case{Variant::Paper, Data::Random, false, torch::kFloat, 0},
                      Case{Variant::Official, Data::Duplicated, true, torch::kFloat, 0},
                      Case{Variant::Paper, Data::Duplicated, false, torch::kFloat, 0},
                      Case{Variant::Official, Data::LargeLogits, true, torch::kFloat, 0},
                      Case{Variant::Paper, Data::LargeLogits, false, torch::kFloat, 0},
                      Case{Variant::Official, Data::Random, true, torch::kDouble, 0},
                      Case{Variant::Paper, Data::Random, false, torch::kDouble, 0},
                      Case{Variant::Official, Data::Random, true, torch::kFloat, 3},
                      Case{Variant::Paper, Data::LargeLogits, true, torch::kFloat, 5}),
    case_name);

// ---------------------------------------------------------------- Sinkhorn

TEST(DistributedSinkhorn, CodesAndMarginalsEqualTheGlobalBatch) {
  auto comm = world();
  const int64_t W = comm->size(), r = comm->rank();
  const int64_t N = 16, b = N / W, K = 10;
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(77);
  auto unit = [&](int64_t n) {
    return F::normalize(torch::randn({n, 12}, gen), F::NormalizeFuncOptions().dim(1));
  };
  auto scores = unit(N).mm(unit(K).t());  // [N, K] cosine scores
  for (int iters : {1, 3, 10}) {
    auto expected = sinkhorn(scores, 0.05, iters, Communicator::single());
    auto mine = sinkhorn(scores.narrow(0, r * b, b), 0.05, iters, comm);
    EXPECT_TRUE(Close(mine, expected.narrow(0, r * b, b), 1e-5)) << iters;
    EXPECT_TRUE(test::AllClose(mine.sum(1), torch::ones({b}), 1e-6)) << "rows sum to 1";
    // Prototype marginals over the global batch: the same imbalance as one
    // process has after the same number of iterations.
    auto marginal = mine.sum(0);
    comm->all_reduce(marginal, ReduceOp::Sum);
    EXPECT_TRUE(Close(marginal, expected.sum(0), 1e-5)) << iters;
  }
  // Batched (G = 2) and reduced-precision scores under the same contract.
  auto two = torch::stack({scores, scores.flip(0)});
  EXPECT_TRUE(Close(sinkhorn(two.narrow(1, r * b, b), 0.05, 3, comm),
                    sinkhorn(two, 0.05, 3, Communicator::single()).narrow(1, r * b, b), 1e-5));
  auto bf = scores.to(torch::kBFloat16);
  auto q = sinkhorn(bf.narrow(0, r * b, b), 0.05, 3, comm);
  EXPECT_EQ(q.scalar_type(), torch::kFloat);
  EXPECT_TRUE(q.isfinite().all().item<bool>());
  EXPECT_TRUE(Close(q, sinkhorn(bf, 0.05, 3, Communicator::single()).narrow(0, r * b, b), 1e-5));
}

TEST(DistributedSinkhorn, ExtremeScoresStayFinite) {
  // Scores at exactly ±1 with ε = 0.05 and ε = 0.01, float32 and bf16.
  auto comm = world();
  const int64_t W = comm->size(), r = comm->rank();
  const int64_t N = 32, b = N / W, K = 12;
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(78);
  auto sign = torch::rand({N, K}, gen).gt(0.5).to(torch::kFloat) * 2 - 1;
  for (double eps : {0.05, 0.01}) {
    for (auto type : {torch::kFloat, torch::kBFloat16}) {
      auto q = sinkhorn(sign.narrow(0, r * b, b).to(type), eps, 3, comm);
      EXPECT_TRUE(q.isfinite().all().item<bool>()) << eps;
      EXPECT_TRUE(test::AllClose(q.sum(1), torch::ones({b}), 1e-5)) << eps;
      EXPECT_TRUE(Close(q, sinkhorn(sign, eps, 3, Communicator::single()).narrow(0, r * b, b), 1e-5)) << eps;
    }
  }
}

}  // namespace
}  // namespace mgca::objectives
