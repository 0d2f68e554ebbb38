// The memory-flat (tiled) ITA and ConVIRT losses against the one-matrix
// losses under mpirun -np 1, 2, 4: same local inputs, same communicator, the
// tiled path forced with objectives.ita_tile < N. Losses and the gradients of
// the local inputs (which include the reduce-scatter of the gathered
// columns' gradient) agree to 1e-6 relative in float32 and 1e-12 in float64
// (relative to each tensor's largest magnitude; 36e-6 in float32 for logits
// 36× the usual size); accuracies are equal where no logits tie.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/objectives/objectives.h"
#include "mgca/util/error.h"
#include "support/tensor_checks.h"
#include "support/world.h"

namespace mgca::objectives {
namespace {

using test::world;

using test::Close;

using comm::Communicator;

enum class TiledData { Random, Duplicated, LargeLogits };

// This rank's rows of a global batch that is identical on every rank.
std::pair<torch::Tensor, torch::Tensor> local_rows(int64_t b, int64_t d, TiledData kind, torch::ScalarType type) {
  auto comm = world();
  const int64_t n = b * comm->size();
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(77 + n);
  auto img = torch::randn({n, d}, gen, torch::kFloat64);
  auto txt = torch::randn({n, d}, gen, torch::kFloat64);
  if (kind == TiledData::Duplicated) {  // rows repeat with period 3 across ranks: tied logits
    auto idx = torch::arange(n) % 3;
    img = img.index_select(0, idx);
    txt = txt.index_select(0, idx);
  }
  const double scale = kind == TiledData::LargeLogits ? 6.0 : 1.0;  // logits up to 36/τ
  img = torch::nn::functional::normalize(img, torch::nn::functional::NormalizeFuncOptions().dim(1)) * scale;
  txt = torch::nn::functional::normalize(txt, torch::nn::functional::NormalizeFuncOptions().dim(1)) * scale;
  const int64_t r = comm->rank();
  return {img.narrow(0, r * b, b).to(type), txt.narrow(0, r * b, b).to(type)};
}

struct TiledOutcome {
  ItaResult result;
  torch::Tensor grad_img, grad_txt;
};

// `which`: 0 = both loss parts weighted, 1 = loss_i2t alone (loss_t2i gets
// no gradient), 2 = the combined loss.
TiledOutcome run(bool convirt, const torch::Tensor& img0, const torch::Tensor& txt0, int64_t tile, int which) {
  auto opts = ObjectiveOptions::official();
  opts.ita_tile = tile;
  auto img = img0.clone().requires_grad_(true);
  auto txt = txt0.clone().requires_grad_(true);
  TiledOutcome o;
  o.result = convirt ? convirt_loss(img, txt, opts, world()) : instance_alignment(img, txt, opts, world());
  const auto& r = o.result;
  torch::Tensor objective = which == 0 ? 0.3 * r.loss_i2t + 1.7 * r.loss_t2i : which == 1 ? r.loss_i2t : r.loss;
  objective.backward();
  o.grad_img = img.grad();
  o.grad_txt = txt.grad();
  return o;
}

void compare(bool convirt, TiledData kind, torch::ScalarType type, int64_t b, int64_t tile, int which) {
  // The two paths compute each logit in differently shaped matmuls, which
  // may round it differently by an ulp: 2^-24·|z| in float32, so at scale 6
  // (logits up to 36/τ instead of 1/τ) the float32 tolerance is 36 × 1e-6.
  const double rtol = type == torch::kFloat64 ? 1e-12 : kind == TiledData::LargeLogits ? 36e-6 : 1e-6;
  auto [img, txt] = local_rows(b, 16, kind, type);
  const int64_t n = b * world()->size();
  SCOPED_TRACE(::testing::Message() << (convirt ? "convirt" : "ita") << " data " << static_cast<int>(kind)
                                    << " " << c10::toString(type) << " N " << n << " tile " << tile
                                    << " which " << which);
  auto whole = run(convirt, img, txt, /*tile=*/n, which);
  auto tiled = run(convirt, img, txt, tile, which);
  EXPECT_TRUE(Close(tiled.result.loss, whole.result.loss, rtol));
  EXPECT_TRUE(Close(tiled.result.loss_i2t, whole.result.loss_i2t, rtol));
  EXPECT_TRUE(Close(tiled.result.loss_t2i, whole.result.loss_t2i, rtol));
  // Accuracies count ties as hits; an ulp of rounding can break an exact tie
  // (duplicated rows) either way, so they are compared where no logits tie.
  if (kind != TiledData::Duplicated) {
    EXPECT_EQ(tiled.result.acc1.item<double>(), whole.result.acc1.item<double>());
    EXPECT_EQ(tiled.result.acc1_t2i.item<double>(), whole.result.acc1_t2i.item<double>());
  }
  if (n < 5) {
    EXPECT_TRUE(std::isnan(tiled.result.acc5.item<double>()));
  } else if (kind != TiledData::Duplicated) {
    EXPECT_EQ(tiled.result.acc5.item<double>(), whole.result.acc5.item<double>());
    EXPECT_EQ(tiled.result.acc5_t2i.item<double>(), whole.result.acc5_t2i.item<double>());
  }
  ASSERT_TRUE(tiled.grad_img.defined() && tiled.grad_txt.defined());
  EXPECT_EQ(tiled.grad_img.scalar_type(), type);
  EXPECT_TRUE(Close(tiled.grad_img, whole.grad_img, rtol));
  EXPECT_TRUE(Close(tiled.grad_txt, whole.grad_txt, rtol));
}

TEST(TiledContrastive, EqualsOneMatrixLossAndGradients) {
  for (bool convirt : {false, true})
    for (auto type : {torch::kFloat32, torch::kFloat64})
      for (TiledData kind : {TiledData::Random, TiledData::Duplicated, TiledData::LargeLogits}) {
        const int64_t b = 5;
        const int64_t n = b * world()->size();
        // one column per tile, tiles that straddle the rank boundaries, one short of N
        for (int64_t tile : {int64_t{1}, int64_t{3}, n - 1}) {
          if (tile < 1 || tile >= n) continue;
          compare(convirt, kind, type, b, tile, 0);
        }
      }
}

TEST(TiledContrastive, OneDirectionAloneAndTheCombinedLoss) {
  const int64_t b = 6;
  const int64_t n = b * world()->size();
  for (bool convirt : {false, true}) {
    compare(convirt, TiledData::Random, torch::kFloat32, b, 4, 1);
    compare(convirt, TiledData::Random, torch::kFloat32, b, n - 1, 2);
  }
}

TEST(TiledContrastive, BFloat16InputGivesBFloat16Gradients) {
  auto [img, txt] = local_rows(4, 16, TiledData::Random, torch::kBFloat16);
  auto whole = run(false, img, txt, 1 << 30, 0);
  auto tiled = run(false, img, txt, 3, 0);
  EXPECT_EQ(tiled.grad_img.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(Close(tiled.result.loss, whole.result.loss, 1e-5));
  // both paths evaluate in float32; the gradients differ by bf16 rounding at most
  EXPECT_TRUE(Close(tiled.grad_img, whole.grad_img, 1e-2));
  EXPECT_TRUE(Close(tiled.grad_txt, whole.grad_txt, 1e-2));
}

TEST(TiledContrastive, TileBelowOneIsAnError) {
  auto [img, txt] = local_rows(2, 4, TiledData::Random, torch::kFloat32);
  auto opts = ObjectiveOptions::official();
  opts.ita_tile = 0;
  try {
    instance_alignment(img, txt, opts, world());
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("ita_tile must be >= 1, got 0"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace mgca::objectives
