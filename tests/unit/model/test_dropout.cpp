// The fast dropout: statistics of the mask, exact scaling, gradient, seeding
// through torch::manual_seed, independence from the thread count, and the
// AVX2 and scalar paths agreeing (float vs double use the same hash). Keyed
// by sample: a sample's mask is the same at any row position, in any batch
// split and in a flattened [b·L, D] layout; the tensor-ops (device) path gives
// the CPU kernels' masks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <tuple>

#include "mgca/model/bert.h"
#include "mgca/model/dropout.h"
#include "model_test_util.h"

namespace mgca::model {
namespace {

TEST(Dropout, KeepsOneMinusPAndScalesExactly) {
  torch::manual_seed(1);
  const int64_t n = 1 << 20;
  const auto x = torch::rand({n}) + 0.5;  // never zero
  for (double p : {0.1, 0.5, 0.9}) {
    const auto y = fast_dropout(x, p, true);
    const auto kept = y.ne(0);
    const double fraction = kept.to(torch::kDouble).mean().item<double>();
    // Binomial standard deviation sqrt(p(1-p)/n) ≤ 5e-4: 6σ.
    EXPECT_NEAR(fraction, 1.0 - p, 6 * std::sqrt(p * (1 - p) / n)) << p;
    const auto expected = x.masked_select(kept) * static_cast<float>(1.0 / (1.0 - p));
    EXPECT_TRUE(torch::equal(y.masked_select(kept), expected)) << p;
  }
}

TEST(Dropout, NeighbouringMaskBitsAreUncorrelated) {
  torch::manual_seed(2);
  const auto kept = fast_dropout(torch::ones({1 << 20}), 0.5, true).ne(0).to(torch::kDouble);
  const auto a = kept.narrow(0, 0, kept.size(0) - 1) - 0.5, b = kept.narrow(0, 1, kept.size(0) - 1) - 0.5;
  const double correlation = (a * b).mean().item<double>() / 0.25;
  EXPECT_LT(std::abs(correlation), 6.0 / std::sqrt(static_cast<double>(kept.size(0))));
}

TEST(Dropout, GradientIsTheSameMaskAndScale) {
  torch::manual_seed(3);
  const auto x = (torch::rand({7, 33, 5}) + 0.5).requires_grad_(true);  // sizes not multiples of 8
  const auto y = fast_dropout(x, 0.3, true);
  const auto g = torch::randn(y.sizes());
  y.backward(g);
  const auto expected = g * y.detach().ne(0).to(torch::kFloat) * static_cast<float>(1.0 / 0.7);
  EXPECT_TRUE(torch::equal(x.grad(), expected));
}

TEST(Dropout, ReproducibleWithManualSeedAndFreshPerCall) {
  const auto x = torch::ones({4096});
  torch::manual_seed(42);
  const auto a = fast_dropout(x, 0.5, true), b = fast_dropout(x, 0.5, true);
  torch::manual_seed(42);
  const auto c = fast_dropout(x, 0.5, true);
  EXPECT_TRUE(torch::equal(a, c));
  EXPECT_FALSE(torch::equal(a, b));
}

TEST(Dropout, SameMaskOnAnyThreadCountAndDtype) {
  const auto x = torch::rand({3, 100003}) + 0.5;
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  torch::manual_seed(7);
  const auto one = fast_dropout(x, 0.25, true);
  at::set_num_threads(4);
  torch::manual_seed(7);
  const auto four = fast_dropout(x, 0.25, true);
  torch::manual_seed(7);
  const auto f64 = fast_dropout(x.to(torch::kFloat64), 0.25, true);  // scalar path
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, four));
  EXPECT_TRUE(torch::equal(one.ne(0), f64.ne(0)));
  EXPECT_TRUE(test::Close(f64, one.to(torch::kFloat64), 1e-7));
}

TEST(Dropout, IdentityWhenNotTrainingAndRejectsBadP) {
  const auto x = torch::rand({10});
  EXPECT_TRUE(fast_dropout(x, 0.5, false).is_same(x));
  EXPECT_TRUE(fast_dropout(x, 0.0, true).is_same(x));
  EXPECT_NE(test::error_of([&] { fast_dropout(x, 1.0, true); }).find("dropout probability must be in [0, 1), got 1"),
            std::string::npos);
}

TEST(Dropout, KeyedBySampleWhateverTheRowAndTheSplit) {
  const auto x = torch::rand({4, 5, 9}) + 0.5;  // 45 elements per sample: blocks cross rows
  torch::Tensor whole, first_call, second_call;
  {
    DropoutKeyScope scope(3, 1, 2, {10, 11, 12, 13});
    whole = fast_dropout(x, 0.3, true);
    second_call = fast_dropout(x, 0.3, true);
  }
  EXPECT_FALSE(torch::equal(whole, second_call));  // each call has its own masks
  {
    // Rows 2..3 alone (another rank's share), in reverse order.
    DropoutKeyScope scope(3, 1, 2, {13, 12});
    const auto part = fast_dropout(x.narrow(0, 2, 2).flip(0), 0.3, true);
    EXPECT_TRUE(torch::equal(part.flip(0), whole.narrow(0, 2, 2)));
  }
  {
    // BERT's flattened [b·L, D] layout.
    DropoutKeyScope scope(3, 1, 2, {10, 11, 12, 13});
    EXPECT_TRUE(torch::equal(fast_dropout(x.reshape({20, 9}), 0.3, true).view({4, 5, 9}), whole));
  }
  for (const auto& [seed, epoch, batch] : {std::tuple<uint64_t, int64_t, int64_t>{4, 1, 2}, {3, 2, 2}, {3, 1, 3}}) {
    DropoutKeyScope scope(seed, epoch, batch, {10, 11, 12, 13});
    EXPECT_FALSE(torch::equal(fast_dropout(x, 0.3, true), whole)) << seed << " " << epoch << " " << batch;
  }
  torch::manual_seed(1);
  const auto unkeyed = fast_dropout(x, 0.3, true);
  torch::manual_seed(2);
  {
    DropoutKeyScope scope(3, 1, 2, {10, 11, 12, 13});
    EXPECT_TRUE(torch::equal(fast_dropout(x, 0.3, true), whole));  // the generator plays no part
  }
  EXPECT_FALSE(torch::equal(unkeyed, whole));
}

TEST(Dropout, TensorOpsPathGivesTheKernelsMasks) {
  const auto x = torch::rand({3, 7, 13}) + 0.5;
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const auto input = x.to(dtype).requires_grad_(true);
    torch::Tensor kernel, ops;
    {
      DropoutKeyScope scope(9, 0, 4, {5, 0, 77});
      kernel = fast_dropout(input, 0.2, true);
    }
    {
      DropoutKeyScope scope(9, 0, 4, {5, 0, 77});
      ops = fast_dropout(input, 0.2, true, DropoutPath::TensorOps);
    }
    EXPECT_TRUE(torch::equal(kernel, ops)) << dtype;
    const auto g = torch::randn(x.sizes(), dtype);
    const auto gk = torch::autograd::grad({kernel}, {input}, {g})[0];
    const auto go = torch::autograd::grad({ops}, {input}, {g})[0];
    EXPECT_TRUE(torch::equal(gk, go)) << dtype;
  }
  torch::manual_seed(4);
  const auto a = fast_dropout(x, 0.5, true);
  torch::manual_seed(4);
  EXPECT_TRUE(torch::equal(a, fast_dropout(x, 0.5, true, DropoutPath::TensorOps)));
}

TEST(Dropout, ScopeChecksTheBatchAndDoesNotNest) {
  DropoutKeyScope scope(1, 0, 0, {0, 1, 2});
  EXPECT_NE(test::error_of([&] { fast_dropout(torch::ones({4, 2}), 0.5, true); })
                .find("the leading dimension of a [4, 2] input is not a multiple of the batch's 3 samples"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { DropoutKeyScope inner(1, 0, 0, {0}); }).find("dropout key scopes do not nest"),
            std::string::npos);
}

}  // namespace
}  // namespace mgca::model

namespace mgca::model {
namespace {

TEST(Dropout, BertUsesItOnlyInTrainModeSeededByTorch) {
  Bert bert(BertConfig::tiny());  // hidden and attention dropout 0.1
  const auto ids = torch::randint(1000, 2000, {2, 12}, torch::kLong);
  const auto mask = torch::ones({2, 12}, torch::kLong);
  bert->eval();
  const auto a = bert->forward(ids, mask).hidden, b = bert->forward(ids, mask).hidden;
  EXPECT_TRUE(torch::equal(a, b));
  bert->train();
  torch::manual_seed(9);
  const auto c = bert->forward(ids, mask).hidden;
  torch::manual_seed(9);
  const auto d = bert->forward(ids, mask).hidden;
  EXPECT_TRUE(torch::equal(c, d));
  EXPECT_FALSE(torch::allclose(a, c));
  c.sum().backward();
  EXPECT_TRUE(bert->layers[0]->named_parameters()["attn.qkv.weight"].grad().defined());
}

TEST(Dropout, BertRowsInAKeyScopeDependOnlyOnTheirSample) {
  Bert bert(BertConfig::tiny());
  bert->train();
  const auto ids = torch::randint(1000, 2000, {4, 12}, torch::kLong);
  const auto mask = torch::ones({4, 12}, torch::kLong);
  torch::Tensor whole, half;
  {
    DropoutKeyScope scope(7, 0, 3, {40, 41, 42, 43});
    whole = bert->forward(ids, mask).hidden;
  }
  {
    DropoutKeyScope scope(7, 0, 3, {42, 43});
    half = bert->forward(ids.narrow(0, 2, 2), mask.narrow(0, 2, 2)).hidden;
  }
  EXPECT_TRUE(test::Close(half, whole.narrow(0, 2, 2), 1e-6));
}

}  // namespace
}  // namespace mgca::model
