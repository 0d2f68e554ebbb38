// comm::exact_op and GradShadows (runtime.batch_invariant): the gradients
// are autograd's, and the float64 shadows summed over W ranks, each holding
// N/W rows, round to the same float32 bits as one rank holding all N rows.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/comm/communicator.h"
#include "mgca/comm/exact_grad.h"
#include "mgca/util/error.h"
#include "support/world.h"

namespace mgca::comm {
namespace {

using test::world;

constexpr int64_t kRows = 32, kIn = 24, kOut = 16;

struct Net {
  torch::Tensor weight, bias, ln_weight, ln_bias;
  GradShadows::NamedTensors named() const {
    return {{"weight", weight}, {"bias", bias}, {"ln_weight", ln_weight}, {"ln_bias", ln_bias}};
  }
};

Net make_net() {
  torch::manual_seed(11);
  return {torch::randn({kOut, kIn}).requires_grad_(), torch::randn({kOut}).requires_grad_(),
          (1 + 0.1 * torch::randn({kOut})).requires_grad_(), (0.1 * torch::randn({kOut})).requires_grad_()};
}

// x [rows, kIn] → LayerNorm(Linear(x)), each through exact_op.
torch::Tensor forward(const Net& n, const torch::Tensor& x) {
  auto h = exact_op([](const auto& in, const auto& p) { return at::addmm(p[1], in[0], p[0].t()); }, {x},
                    {n.weight, n.bias});
  return exact_op([](const auto& in, const auto& p) { return at::layer_norm(in[0], {kOut}, p[0], p[1], 1e-5); }, {h},
                  {n.ln_weight, n.ln_bias});
}

// The inputs and the output weights of the loss Σ r·y, the same on every rank.
std::pair<torch::Tensor, torch::Tensor> data() {
  torch::manual_seed(5);
  auto x = torch::randn({kRows, kIn});
  auto r = torch::randn({kRows, kOut});
  return {x, r};
}

TEST(ExactGrad, GradientsAreAutogradsAndTheSameForAnySplit) {
  auto comm = world();
  const int w = comm->size(), rank = comm->rank();
  ASSERT_EQ(kRows % w, 0);
  const int64_t b = kRows / w;
  const auto [x, r] = data();

  // This rank's rows; the shadows summed over ranks in float64, rounded once.
  const Net net = make_net();
  GradShadows shadows(net.named());
  {
    GradShadows::Scope scope(&shadows);
    const auto y = forward(net, x.narrow(0, rank * b, b));
    (y * r.narrow(0, rank * b, b)).sum().backward();
  }
  std::map<std::string, torch::Tensor> summed;
  for (const auto& [name, shadow] : shadows.shadows()) {
    ASSERT_TRUE(shadow.grad().defined()) << name;
    ASSERT_EQ(shadow.grad().scalar_type(), torch::kFloat64) << name;
    auto g = shadow.grad().clone();
    comm->all_reduce(g, ReduceOp::Sum);
    summed[name] = g.to(torch::kFloat32);
  }
  EXPECT_FALSE(net.weight.grad().defined());  // the gradient went to the shadow only

  if (rank == 0) {
    // One rank, all rows, through the same path: the same bits.
    const Net one = make_net();
    GradShadows one_shadows(one.named());
    {
      GradShadows::Scope scope(&one_shadows);
      (forward(one, x) * r).sum().backward();
    }
    one_shadows.write_gradients();
    // Plain autograd in float32 (no Scope): the same gradients up to float32 rounding.
    const Net plain = make_net();
    (forward(plain, x) * r).sum().backward();
    const std::map<std::string, torch::Tensor> by_name = {{"weight", one.weight.grad()},
                                                          {"bias", one.bias.grad()},
                                                          {"ln_weight", one.ln_weight.grad()},
                                                          {"ln_bias", one.ln_bias.grad()}};
    const std::map<std::string, torch::Tensor> reference = {{"weight", plain.weight.grad()},
                                                            {"bias", plain.bias.grad()},
                                                            {"ln_weight", plain.ln_weight.grad()},
                                                            {"ln_bias", plain.ln_bias.grad()}};
    for (const auto& [name, g] : by_name) {
      EXPECT_TRUE(torch::equal(summed.at(name), g)) << name << " W=" << w << " differs from one rank: max "
                                                    << (summed.at(name) - g).abs().max().item<double>();
      const auto& ref = reference.at(name);
      EXPECT_LE((g - ref).abs().max().item<double>(), 1e-4 * ref.abs().max().item<double>()) << name;
    }
  }
  comm->barrier();
}

TEST(ExactGrad, ReplicatedParameterCountsOnce) {
  auto comm = world();
  const Net net = make_net();
  GradShadows shadows(net.named());
  {
    GradShadows::Scope scope(&shadows);
    // Every rank computes the same loss of the parameter.
    (replicated_parameter(net.weight, *comm).square() * 0.5).sum().backward();
  }
  auto g = shadows.shadows()[0].second.grad().clone();
  comm->all_reduce(g, ReduceOp::Sum);
  EXPECT_TRUE(torch::equal(g.to(torch::kFloat32), net.weight.detach()));  // d(w²/2)/dw = w, once
}

TEST(ExactGrad, AGradientOutsideTheExactPathIsAnError) {
  const Net net = make_net();
  GradShadows shadows(net.named());
  {
    GradShadows::Scope scope(&shadows);
    net.bias.square().sum().backward();  // a plain use of a shadowed parameter
  }
  EXPECT_THROW(shadows.write_gradients(), mgca::Error);
}

}  // namespace
}  // namespace mgca::comm
