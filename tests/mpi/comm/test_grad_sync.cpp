// Bucketed gradient synchronisation against one flat all-reduce of all
// gradients, launch timing, parameters without gradients, accumulation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>

#include "mgca/comm/communicator.h"
#include "mgca/comm/grad_sync.h"
#include "mgca/util/error.h"
#include "support/tensor_checks.h"
#include "support/world.h"

namespace mgca::comm {
namespace {

using test::world;

// Same weights on every rank (seeded), different data per rank.
struct Mlp : torch::nn::Module {
  explicit Mlp(std::vector<int64_t> widths, torch::ScalarType type = torch::kFloat32) {
    torch::manual_seed(1234);
    for (size_t i = 0; i + 1 < widths.size(); ++i) {
      layers.push_back(register_module("fc" + std::to_string(i), torch::nn::Linear(widths[i], widths[i + 1])));
    }
    to(type);
  }
  torch::Tensor forward(torch::Tensor x) {
    for (size_t i = 0; i < layers.size(); ++i) {
      x = layers[i]->forward(x);
      if (i + 1 < layers.size()) x = torch::tanh(x);
    }
    return x;
  }
  std::vector<torch::nn::Linear> layers;
};

torch::Tensor rank_input(int rank, int64_t rows, int64_t cols, int salt, torch::ScalarType type = torch::kFloat32) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(100 * rank + salt);
  return torch::randn({rows, cols}, gen, torch::kFloat64).to(type);
}

// The reference: every parameter's local .grad concatenated, one flat
// all-reduce (Avg), split back.
std::vector<torch::Tensor> flat_average(const std::vector<torch::Tensor>& grads) {
  std::vector<torch::Tensor> flat;
  for (const auto& g : grads) flat.push_back(g.reshape({-1}));
  auto all = torch::cat(flat);
  world()->all_reduce(all, ReduceOp::Avg);
  std::vector<torch::Tensor> out;
  int64_t offset = 0;
  for (const auto& g : grads) {
    out.push_back(all.narrow(0, offset, g.numel()).view(g.sizes()));
    offset += g.numel();
  }
  return out;
}

std::vector<torch::Tensor> grads_of(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  return out;
}

// Every rank holds the same tensor, bit for bit.
void expect_identical_across_ranks(const torch::Tensor& t, const std::string& what) {
  auto gathered = world()->all_gather(t.detach().reshape({1, -1}).contiguous());
  for (int64_t r = 1; r < gathered.size(0); ++r) {
    EXPECT_TRUE(gathered[r].equal(gathered[0])) << what << " differs between rank 0 and rank " << r;
  }
}

TEST(GradSync, BucketedEqualsOneFlatAllReduce) {
  auto comm = world();
  for (auto type : {torch::kFloat32, torch::kFloat64}) {
    Mlp reference({33, 64, 48, 40, 20, 7}, type);
    Mlp model({33, 64, 48, 40, 20, 7}, type);
    const auto x = rank_input(comm->rank(), 6, 33, 1, type);
    reference.forward(x).square().sum().backward();
    const auto expected = flat_average(grads_of(reference));

    GradSyncOptions options;
    options.bucket_cap_mb = 8.0 / 1024;        // 8 KiB buckets
    options.first_bucket_cap_mb = 1.0 / 1024;  // 1 KiB first bucket
    GradSync sync(model.named_parameters(), comm, options);
    ASSERT_GE(sync.buckets().size(), 3u);
    model.forward(x).square().sum().backward();
    sync.finalize();
    const auto got = grads_of(model);
    const double tol = type == torch::kFloat32 ? 1e-6 : 1e-13;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_TRUE(test::AllClose(got[i], expected[i], tol, tol)) << "parameter " << i;
      expect_identical_across_ranks(got[i], "grad " + std::to_string(i));
    }
    EXPECT_EQ(sync.stats().launched_during_backward, static_cast<int>(sync.buckets().size()));
    EXPECT_EQ(sync.stats().launched_at_finalize, 0);
    EXPECT_EQ(sync.stats().parameters_without_grad, 0);
  }
}

// comm.grad_dtype = "bf16": the buckets travel as bf16 (half the bytes) and
// the average lands in float32 .grad; it equals the flat average of the
// bf16-rounded local gradients up to one more bf16 rounding of the result.
TEST(GradSync, BFloat16WireHalvesTheBytesAndAveragesIntoFloat32) {
  auto comm = world();
  Mlp reference({33, 64, 48, 40, 20, 7});
  Mlp model({33, 64, 48, 40, 20, 7});
  const auto x = rank_input(comm->rank(), 6, 33, 2);
  reference.forward(x).square().sum().backward();
  std::vector<torch::Tensor> rounded;
  for (const auto& g : grads_of(reference)) rounded.push_back(g.to(torch::kBFloat16).to(torch::kFloat64));
  const auto expected = flat_average(rounded);

  GradSyncOptions options;
  options.bucket_cap_mb = 8.0 / 1024;
  options.first_bucket_cap_mb = 1.0 / 1024;
  options.wire_dtype = GradDtype::BFloat16;
  GradSync sync(model.named_parameters(), comm, options);
  for (const auto& bucket : sync.buckets()) {
    EXPECT_EQ(bucket.dtype, torch::kFloat32);
    EXPECT_EQ(bucket.wire_bytes * 2, bucket.bytes);
  }
  model.forward(x).square().sum().backward();
  sync.finalize();
  const auto got = grads_of(model);
  const double w = comm->size();
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].scalar_type(), torch::kFloat32);
    // bf16 keeps 8 significant bits, and the reduction rounds each partial
    // sum to bf16: per element at most W roundings of 2^-8 relative to the
    // largest local contribution.
    auto largest = rounded[i].abs();
    comm->all_reduce(largest, ReduceOp::Max);
    auto error = (got[i].to(torch::kFloat64) - expected[i]).abs();
    auto bound = expected[i].abs() / 256 + largest * (w / 256);
    EXPECT_TRUE(error.le(bound).all().item<bool>())
        << "parameter " << i << ": worst error / bound " << (error / bound).max().item<double>();
    expect_identical_across_ranks(got[i], "grad " + std::to_string(i));
  }
  // Native keeps float32 on the wire.
  GradSync native(reference.named_parameters(), comm, GradSyncOptions{});
  for (const auto& bucket : native.buckets()) EXPECT_EQ(bucket.wire_bytes, bucket.bytes);
}

TEST(GradSync, ParseGradDtype) {
  EXPECT_EQ(parse_grad_dtype("native"), GradDtype::Native);
  EXPECT_EQ(parse_grad_dtype("bf16"), GradDtype::BFloat16);
  try {
    parse_grad_dtype("fp8");
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("unknown gradient dtype 'fp8' (valid: native, bf16)"), std::string::npos)
        << error.what();
  }
}

TEST(GradSync, BucketsFollowReverseOrderWithASmallFirstBucket) {
  auto comm = world();
  Mlp model({256, 256, 256, 256, 16});  // fc weights 256 KiB each
  GradSyncOptions options;
  options.bucket_cap_mb = 0.4;          // closes at the second 256 KiB weight
  options.first_bucket_cap_mb = 0.01;   // 10 KiB: closes after the first weight
  GradSync sync(model.named_parameters(), comm, options);
  const auto buckets = sync.buckets();
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_EQ(buckets[0].names, (std::vector<std::string>{"fc3.bias", "fc3.weight"}));
  EXPECT_EQ(buckets[1].names, (std::vector<std::string>{"fc2.bias", "fc2.weight", "fc1.bias", "fc1.weight"}));
  EXPECT_EQ(buckets[2].names, (std::vector<std::string>{"fc0.bias", "fc0.weight"}));
  int64_t total = 0;
  for (const auto& b : buckets) total += b.bytes;
  int64_t expected = 0;
  for (const auto& p : model.parameters()) expected += p.numel() * 4;
  EXPECT_EQ(total, expected);
}

// Buckets go out while backward is still running: hooks registered before
// GradSync's see, at every gradient arrival, how many buckets it has
// launched. The count at the last arrival must match the in-order launch
// rule replayed on the observed arrival order, and be most of the buckets.
TEST(GradSync, BucketsLaunchBeforeBackwardFinishes) {
  auto comm = world();
  Mlp model({40, 64, 64, 64, 64, 64, 64, 8});
  std::vector<std::string> arrivals;
  std::vector<int> launched_at_arrival;
  GradSync* sync_ptr = nullptr;
  for (auto& item : model.named_parameters()) {
    const std::string name = item.key();
    item.value().register_hook([&, name](const torch::Tensor&) {
      arrivals.push_back(name);
      launched_at_arrival.push_back(sync_ptr->launched());
    });
  }
  GradSyncOptions options;
  options.bucket_cap_mb = 10.0 / 1024;
  options.first_bucket_cap_mb = 1.0 / 1024;
  GradSync sync(model.named_parameters(), comm, options);
  sync_ptr = &sync;
  const auto buckets = sync.buckets();
  ASSERT_GE(buckets.size(), 5u);

  model.forward(rank_input(comm->rank(), 4, 40, 2)).sum().backward();
  ASSERT_EQ(arrivals.size(), model.parameters().size());

  // Replay: a bucket launches once all its parameters arrived and all
  // earlier buckets launched.
  std::map<std::string, int> bucket_of;
  for (size_t b = 0; b < buckets.size(); ++b) {
    for (const auto& n : buckets[b].names) bucket_of[n] = static_cast<int>(b);
  }
  std::vector<int> missing(buckets.size());
  for (size_t b = 0; b < buckets.size(); ++b) missing[b] = static_cast<int>(buckets[b].names.size());
  size_t next = 0;
  for (size_t i = 0; i < arrivals.size(); ++i) {
    EXPECT_EQ(launched_at_arrival[i], static_cast<int>(next)) << "at arrival of " << arrivals[i];
    --missing[bucket_of[arrivals[i]]];
    while (next < buckets.size() && missing[next] == 0) ++next;
  }
  // When the last gradient arrives, all buckets but the last one are out.
  EXPECT_EQ(launched_at_arrival.back(), static_cast<int>(buckets.size()) - 1);
  EXPECT_EQ(sync.launched(), static_cast<int>(buckets.size()));
  sync.finalize();
  EXPECT_EQ(sync.stats().launched_during_backward, static_cast<int>(buckets.size()));
}

// Branch `used` gets gradients everywhere, `sometimes` on rank 0 only,
// `never` on no rank, `frozen` has requires_grad false.
struct Branches : torch::nn::Module {
  Branches() {
    torch::manual_seed(77);
    frozen = register_module("frozen", torch::nn::Linear(6, 6));
    used = register_module("used", torch::nn::Linear(6, 5));
    sometimes = register_module("sometimes", torch::nn::Linear(6, 5));
    never = register_module("never", torch::nn::Linear(6, 5));
    for (auto& p : frozen->parameters()) p.requires_grad_(false);
  }
  torch::Tensor forward(const torch::Tensor& x, bool use_sometimes) {
    auto h = torch::relu(frozen->forward(x));
    auto y = used->forward(h);
    if (use_sometimes) y = y + 2 * sometimes->forward(h);
    return y.square().sum();
  }
  torch::nn::Linear frozen{nullptr}, used{nullptr}, sometimes{nullptr}, never{nullptr};
};

TEST(GradSync, ParametersWithoutGradientsNeitherDeadlockNorDesynchronise) {
  auto comm = world();
  for (bool prepare : {false, true}) {
    Branches model;
    Branches reference;
    const auto x = rank_input(comm->rank(), 3, 6, 3);
    const bool use_sometimes = comm->rank() == 0;
    // Reference: local grads (zeros where none), one flat average.
    reference.forward(x, use_sometimes).backward();
    auto used_w = reference.used->weight.grad().clone();
    auto some_w = use_sometimes ? reference.sometimes->weight.grad().clone()
                                : torch::zeros_like(reference.sometimes->weight);
    auto expected = flat_average({used_w, some_w});

    GradSyncOptions options;
    options.bucket_cap_mb = 1e-6;  // one parameter per bucket
    options.first_bucket_cap_mb = 1e-6;
    GradSync sync(model.named_parameters(), comm, options);
    EXPECT_EQ(sync.buckets().size(), 6u);  // frozen parameters are not bucketed
    for (int step = 0; step < 3; ++step) {  // repeated steps stay in step across ranks
      for (auto& p : model.parameters()) p.mutable_grad() = torch::Tensor();
      auto loss = model.forward(x, use_sometimes);
      if (prepare) sync.prepare_for_backward({loss});
      loss.backward();
      sync.finalize();
      EXPECT_TRUE(test::AllClose(model.used->weight.grad(), expected[0], 1e-6, 1e-7));
      ASSERT_TRUE(model.sometimes->weight.grad().defined()) << "rank " << comm->rank();
      EXPECT_TRUE(test::AllClose(model.sometimes->weight.grad(), expected[1], 1e-6, 1e-7));
      expect_identical_across_ranks(model.sometimes->weight.grad(), "sometimes.weight grad");
      EXPECT_FALSE(model.never->weight.grad().defined());  // no rank had one: stays undefined
      EXPECT_FALSE(model.never->bias.grad().defined());
      EXPECT_FALSE(model.frozen->weight.grad().defined());
      EXPECT_EQ(sync.stats().parameters_without_grad, 2);
    }
    // `never` is registered last, so it sits in bucket 0 and blocks every
    // later bucket until finalize(), unless prepare_for_backward() found it
    // unreachable before backward.
    if (prepare) {
      EXPECT_EQ(sync.stats().launched_at_finalize, 0);
    } else {
      EXPECT_EQ(sync.stats().launched_during_backward, 0);
    }
  }
}

TEST(GradSync, AccumulationSyncsOnlyTheLastMicroStep) {
  auto comm = world();
  Mlp reference({12, 16, 9, 3});
  Mlp model({12, 16, 9, 3});
  constexpr int kMicro = 3;
  for (int m = 0; m < kMicro; ++m) {
    reference.forward(rank_input(comm->rank(), 5, 12, 10 + m)).square().mean().backward();
  }
  const auto local_sum = grads_of(reference);
  const auto expected = flat_average(local_sum);

  GradSyncOptions options;
  options.bucket_cap_mb = 1.0 / 1024;
  options.first_bucket_cap_mb = 0.2 / 1024;
  GradSync sync(model.named_parameters(), comm, options);
  for (int step = 0; step < 2; ++step) {
    for (auto& p : model.parameters()) p.mutable_grad() = torch::Tensor();
    for (int m = 0; m < kMicro; ++m) {
      auto guard = m + 1 < kMicro ? sync.no_sync() : GradSync::NoSync();
      model.forward(rank_input(comm->rank(), 5, 12, 10 + m)).square().mean().backward();
      if (m + 1 < kMicro) {
        EXPECT_EQ(sync.launched(), 0) << "no communication in a no_sync micro-step";
      }
    }
    if (step == 0) {  // before finalize: local sums, nothing averaged yet
      const auto local = grads_of(model);
      for (size_t i = 0; i < local.size(); ++i) EXPECT_TRUE(test::AllClose(local[i], local_sum[i], 1e-6, 1e-7));
    }
    sync.finalize();
    const auto got = grads_of(model);
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_TRUE(test::AllClose(got[i], expected[i], 1e-6, 1e-7)) << "step " << step << " parameter " << i;
    }
  }
}

TEST(GradSync, MixedDtypesGetSeparateBuckets) {
  auto comm = world();
  torch::manual_seed(5);
  auto a = torch::randn({30}, torch::kFloat32).requires_grad_(true);
  auto b = torch::randn({20}, torch::kFloat64).requires_grad_(true);
  auto c = torch::randn({10}, torch::kFloat32).requires_grad_(true);
  GradSync sync(GradSync::NamedParameters{{"a", a}, {"b", b}, {"c", c}}, comm);
  const auto buckets = sync.buckets();
  ASSERT_EQ(buckets.size(), 2u);
  EXPECT_EQ(buckets[0].names, (std::vector<std::string>{"c", "a"}));
  EXPECT_EQ(buckets[0].dtype, torch::kFloat32);
  EXPECT_EQ(buckets[1].names, (std::vector<std::string>{"b"}));
  const double s = comm->rank() + 1.0;
  ((a * s).sum() + (b * b * s).sum() + (c * 3 * s).sum()).backward();
  sync.finalize();
  const double mean_s = (comm->size() + 1) / 2.0;
  EXPECT_TRUE(test::AllClose(a.grad(), torch::full({30}, mean_s, torch::kFloat32), 1e-7));
  EXPECT_TRUE(test::AllClose(b.grad(), 2 * b.detach() * mean_s, 1e-12));
  EXPECT_TRUE(test::AllClose(c.grad(), torch::full({10}, 3 * mean_s, torch::kFloat32), 1e-7));
}

TEST(GradSync, SecondBackwardWithoutFinalizeIsAnError) {
  auto comm = world();
  auto p = torch::ones({3}, torch::requires_grad());
  GradSync sync(GradSync::NamedParameters{{"lonely.weight", p}}, comm);
  (p * 2).sum().backward();
  try {
    (p * 2).sum().backward();
    FAIL() << "no error";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("parameter 'lonely.weight' received a second gradient"),
              std::string::npos)
        << error.what();
  }
  sync.finalize();
  EXPECT_TRUE(p.grad().defined());
}

TEST(GradSync, DifferentParameterListsAcrossRanksAreReported) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "needs two ranks";
  auto p = torch::ones({comm->rank() == 1 ? 4 : 3}, torch::requires_grad());
  try {
    GradSync sync(GradSync::NamedParameters{{"w", p}}, comm);
    FAIL() << "no error";
  } catch (const Error& error) {
    const std::string text = error.what();
    EXPECT_NE(text.find("ranks pass different parameter lists"), std::string::npos) << text;
    EXPECT_NE(text.find("rank 0: 1 parameters"), std::string::npos) << text;
    EXPECT_NE(text.find("rank 1: 1 parameters"), std::string::npos) << text;
  }
}

TEST(GradSync, FinalizeInsideNoSyncIsAnError) {
  auto comm = world();
  auto p = torch::ones({2}, torch::requires_grad());
  GradSync sync(GradSync::NamedParameters{{"p", p}}, comm);
  auto guard = sync.no_sync();
  EXPECT_THROW(sync.finalize(), Error);
}

}  // namespace
}  // namespace mgca::comm
