// The official run's per-rank losses (objectives.negatives = objectives.sinkhorn
// = "local", docs/contract.md §2.7) under mpirun -np 1, 2, 4: the golden batches
// b (ViT) and c (ResNet) are cut into W parts, rank r runs our objective on
// part r with the world communicator, and compares with the official MGCA loss
// code run on that part alone (official_parts.py: bench/reference's
// MGCA.loss, which tests/unit/bench checks against the golden vectors):
// every loss part, acc1, the Sinkhorn codes, the gradients w.r.t. the rank's
// raw features and the prototype gradient, 1e-5 relative in float32. The loss
// the trainer reports is the mean over ranks of these, and its gradient sync
// averages the prototype gradient as DDP does.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>

#include "mgca/comm/communicator.h"
#include "mgca/io/safetensors.h"
#include "mgca/objectives/objectives.h"
#include "support/tensor_checks.h"
#include "support/test_support.h"
#include "support/world.h"

namespace mgca::objectives {
namespace {

using test::Close;

namespace F = torch::nn::functional;

struct LocalCase {
  const char* stem;
  bool vit;
};
void PrintTo(const LocalCase& c, std::ostream* os) { *os << c.stem; }

class OfficialPerRank : public ::testing::TestWithParam<LocalCase> {};

// Our objective on rows [begin, begin + b) of the golden batch.
struct Ours {
  MgcaObjectiveResult r;
  torch::Tensor img, rep, patch, word, proto;  // leaves (raw features, normalized prototypes)
};

Ours run_part(const io::SafetensorsFile& g, int64_t begin, int64_t b, bool vit, const ObjectiveOptions& opts,
              const std::shared_ptr<comm::Communicator>& comm) {
  Ours o;
  auto leaf = [&](const char* name) { return g.tensor(name).narrow(0, begin, b).clone().requires_grad_(true); };
  o.img = leaf("in_img_feat");
  o.rep = leaf("in_report_feat");
  o.patch = leaf("in_patch_feat");
  o.word = leaf("in_word_feat");
  auto proto = g.tensor("in_proto_weight_raw");
  normalize_prototypes_(proto);
  o.proto = proto.requires_grad_(true);
  const auto norm = F::NormalizeFuncOptions().dim(-1);
  MgcaObjectiveInputs in;
  in.img_emb = F::normalize(o.img, norm);
  in.report_emb = F::normalize(o.rep, norm);
  in.patch_emb = F::normalize(o.patch, norm);
  in.word_emb = F::normalize(o.word, norm);
  in.word_weight = g.tensor("in_word_attn").narrow(0, begin, b);
  in.word_mask = g.tensor("in_words_pad_mask").narrow(0, begin, b);
  if (vit) in.patch_weight = g.tensor("in_img_attn_map").narrow(0, begin, b).select(2, 0).slice(2, 1).mean(1);
  in.prototypes = o.proto;
  o.r = mgca_objective(in, opts, comm);
  o.r.loss.backward();
  return o;
}

TEST_P(OfficialPerRank, LossesCodesAndGradientsEqualTheOfficialCodeOnEachRanksRows) {
  const auto& c = GetParam();
  auto comm = test::world();
  const int64_t W = comm->size(), rank = comm->rank();
  const auto golden = test::shared_data_dir() / "golden" / (std::string(c.stem) + "_float32.safetensors");
  io::SafetensorsFile g(golden);
  const int64_t B = g.tensor("in_img_feat").size(0);
  ASSERT_EQ(B % W, 0) << "the golden batch of " << B << " rows does not split over " << W << " ranks";
  const int64_t b = B / W;

  // Rank 0 runs the reference for every part once; every rank reads its own.
  std::optional<test::TempDir> dir;
  std::string out, failure;
  if (rank == 0) {
    dir.emplace("objectives-local");
    out = (*dir / "parts.safetensors").string();
    const auto script = test::source_dir() / "tests" / "mpi" / "objectives" / "official_parts.py";
    const auto run = test::run_command(test::python() + " " + test::quote(script) + " " + test::quote(golden) + " " +
                                       std::to_string(W) + " " + test::quote(out));
    if (run.exit_code != 0) failure = run.output;
  }
  failure = comm->broadcast_string(failure, 0);
  out = comm->broadcast_string(out, 0);
  ASSERT_TRUE(failure.empty()) << "official_parts.py failed:\n" << failure;
  auto ref_file = std::make_unique<io::SafetensorsFile>(out);
  auto ref = [&](const std::string& name) { return ref_file->tensor(std::to_string(rank) + "/" + name); };
  // Loaded: rank 0 may remove the folder once every rank has its file open.
  comm->barrier();

  auto opts = ObjectiveOptions::official();
  opts.num_prototypes = g.tensor("in_proto_weight_raw").size(0);
  opts.patches_from_vit = c.vit;
  opts.negatives = Scope::Local;
  opts.sinkhorn = Scope::Local;
  const auto o = run_part(g, rank * b, b, c.vit, opts, comm);
  const double rtol = 1e-5;
  auto expect = [&](const torch::Tensor& ours, const std::string& name) {
    const auto want = ref(name);
    EXPECT_TRUE(Close(ours.detach().to(torch::kDouble).reshape(want.sizes()), want, rtol))
        << name << " (rank " << rank << " of " << W << ", rows " << rank * b << ".." << rank * b + b - 1 << ")";
  };
  expect(o.r.loss, "loss");
  expect(o.r.ita.loss, "loss_ita");
  expect(o.r.ita.loss_i2t, "loss_ita_i2t");
  expect(o.r.ita.loss_t2i, "loss_ita_t2i");
  expect(o.r.ita.acc1, "acc1");
  expect(o.r.cta.loss, "loss_cta");
  expect(o.r.cta.loss_word, "loss_word");
  expect(o.r.cta.loss_patch, "loss_patch");
  expect(o.r.cpa.loss, "loss_cpa");
  expect(o.r.cpa.codes_img, "q_img");
  expect(o.r.cpa.codes_report, "q_report");
  expect(o.img.grad(), "grad_img_feat");
  expect(o.rep.grad(), "grad_report_feat");
  expect(o.patch.grad(), "grad_patch_feat");
  expect(o.word.grad(), "grad_word_feat");
  expect(o.proto.grad(), "grad_proto");

  // The keys are independent: local negatives with global Sinkhorn give the
  // official ITA of the part and the global batch's CPA (and vice versa).
  auto mixed = opts;
  mixed.sinkhorn = Scope::Global;
  auto global = opts;
  global.negatives = Scope::Global;
  global.sinkhorn = Scope::Global;
  const auto m = run_part(g, rank * b, b, c.vit, mixed, comm);
  const auto gl = run_part(g, rank * b, b, c.vit, global, comm);
  expect(m.r.ita.loss, "loss_ita");
  EXPECT_TRUE(Close(m.r.cpa.loss, gl.r.cpa.loss, rtol));
  mixed.negatives = Scope::Global;
  mixed.sinkhorn = Scope::Local;
  const auto m2 = run_part(g, rank * b, b, c.vit, mixed, comm);
  expect(m2.r.cpa.loss, "loss_cpa");
  EXPECT_TRUE(Close(m2.r.ita.loss, gl.r.ita.loss, rtol));
  if (W > 1) {
    // And the default really is another computation on more than one rank.
    const double official = ref("loss_ita").item<double>(), ours = gl.r.ita.loss.item<double>();
    EXPECT_GT(std::abs(ours - official), 1e-3 * std::abs(official)) << "global ITA equals the per-rank one";
  }
  comm->barrier();  // every rank is done with the file before rank 0 removes it
}

INSTANTIATE_TEST_SUITE_P(Golden, OfficialPerRank,
                         ::testing::Values(LocalCase{"mgca_b_vit", true}, LocalCase{"mgca_c_resnet", false}),
                         [](const ::testing::TestParamInfo<LocalCase>& info) { return std::string(info.param.stem); });

}  // namespace
}  // namespace mgca::objectives
