// Every collective × dtype × size (0 to several MiB) × contiguous or not,
// checked element-wise against a host computation from every rank's data
// (each rank regenerates all ranks' inputs from their seeds). Integer-valued
// data keeps sums exact in every dtype, so results must match bit for bit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/comm/communicator.h"
#include "mgca/util/error.h"
#include "support/tensor_checks.h"
#include "support/world.h"

namespace mgca::comm {
namespace {

using test::world;

// A small-message communicator: every host collective is split into many
// MPI messages (the path that handles counts beyond INT_MAX).
std::shared_ptr<Communicator> chunked_world() {
  static auto comm = [] {
    CommOptions options;
    options.max_message_bytes = 40;
    return Communicator::world(options);
  }();
  return comm;
}

const std::vector<torch::ScalarType> kTypes = {torch::kFloat32, torch::kFloat64, torch::kBFloat16,
                                               torch::kHalf,    torch::kInt64,   torch::kInt32,
                                               torch::kInt16,   torch::kUInt8,   torch::kInt8,
                                               torch::kBool};

// Element counts from empty to 3 MiB (of the dtype).
std::vector<int64_t> counts_for(torch::ScalarType type) {
  const int64_t big = (int64_t{3} << 20) / static_cast<int64_t>(c10::elementSize(type));
  return {0, 1, 6, 999, 4099, 65536, big};
}

// Rank r's data, identical wherever it is regenerated. Floats hold small
// integers so sums of up to 4 ranks are exact even in bfloat16; 8- and
// 16-bit integers span their full range so sums wrap around as in torch.
torch::Tensor rank_data(int rank, int64_t count, torch::ScalarType type, int salt = 0) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(7919 * rank + 104729 * salt + count + 17);
  if (type == torch::kBool) return torch::randint(0, 2, {count}, gen, torch::kInt64).to(torch::kBool);
  if (type == torch::kUInt8) return torch::randint(0, 256, {count}, gen, torch::kInt64).to(type);
  // int8/int16 span their range too: sums wrap around.
  if (type == torch::kInt8) return torch::randint(-128, 128, {count}, gen, torch::kInt64).to(type);
  if (type == torch::kInt16) return torch::randint(-32768, 32768, {count}, gen, torch::kInt64).to(type);
  return torch::randint(-40, 41, {count}, gen, torch::kInt64).to(type);
}

// [count] → a 2-D shape when it splits evenly (to exercise dim handling).
std::vector<int64_t> shape_of(int64_t count) {
  if (count >= 2 && count % 2 == 0) return {count / 2, 2};
  return {count};
}

// The same values laid out non-contiguously (transposed storage, or a
// stride-2 slice for 1-D shapes).
torch::Tensor non_contiguous(const torch::Tensor& t) {
  if (t.dim() == 2) return t.t().contiguous().t();
  auto wide = torch::zeros({t.numel(), 2}, t.options());
  wide.select(1, 0).copy_(t);
  return wide.select(1, 0);
}

torch::Tensor host_reduce(const std::vector<torch::Tensor>& parts, ReduceOp op) {
  const auto type = parts[0].scalar_type();
  auto stacked = torch::stack(parts);
  if (type == torch::kBool) {
    return op == ReduceOp::Min ? stacked.all(0) : stacked.any(0);
  }
  switch (op) {
    case ReduceOp::Max: return std::get<0>(stacked.max(0));
    case ReduceOp::Min: return std::get<0>(stacked.min(0));
    case ReduceOp::Sum:
    case ReduceOp::Avg: {
      auto sum = parts[0].clone();
      for (size_t r = 1; r < parts.size(); ++r) sum.add_(parts[r]);  // wraps like MPI for uint8/int8
      if (op == ReduceOp::Avg) sum.div_(static_cast<int64_t>(parts.size()));
      return sum;
    }
  }
  return {};
}

std::vector<ReduceOp> ops_for(torch::ScalarType type, int64_t count) {
  std::vector<ReduceOp> ops = {ReduceOp::Sum};
  if (count > 65536) return ops;  // large sizes: sum only (time)
  ops.push_back(ReduceOp::Max);
  ops.push_back(ReduceOp::Min);
  if (c10::isFloatingType(type)) ops.push_back(ReduceOp::Avg);
  return ops;
}

// "" when equal, else where and how they first differ.
std::string first_difference(const torch::Tensor& got, const torch::Tensor& expected) {
  if (got.sizes() != expected.sizes()) return fmt::format("shape {} vs {}", c10::str(got.sizes()), c10::str(expected.sizes()));
  auto a = got.reshape({-1}).to(torch::kFloat64);
  auto b = expected.reshape({-1}).to(torch::kFloat64);
  auto diff = a.ne(b).nonzero();
  if (diff.numel() == 0) return "";
  const int64_t i = diff[0][0].item<int64_t>();
  return fmt::format("{} of {} elements differ; first at {}: got {}, expected {}", diff.size(0), a.numel(), i,
                     a[i].item<double>(), b[i].item<double>());
}

std::string label(torch::ScalarType type, int64_t count, bool contiguous, const char* what) {
  return fmt::format("{} {} x{} {}", what, c10::toString(type), count, contiguous ? "contiguous" : "strided");
}

void check_all_reduce(const std::shared_ptr<Communicator>& comm, int salt, int64_t max_count = INT64_MAX) {
  const int w = comm->size();
  for (auto type : kTypes) {
    for (int64_t count : counts_for(type)) {
      if (count > max_count) continue;
      std::vector<torch::Tensor> parts;
      for (int r = 0; r < w; ++r) parts.push_back(rank_data(r, count, type, salt).reshape(shape_of(count)));
      for (auto op : ops_for(type, count)) {
        const auto expected = host_reduce(parts, op);
        for (bool contiguous : {true, false}) {
          auto mine = contiguous ? parts[comm->rank()].clone() : non_contiguous(parts[comm->rank()]);
          ASSERT_EQ(mine.is_contiguous(), contiguous || mine.numel() <= 1);
          comm->all_reduce(mine, op);
          ASSERT_TRUE(mine.equal(expected))
              << label(type, count, contiguous, "all_reduce") << " " << reduce_op_name(op) << ": "
              << first_difference(mine, expected);
        }
      }
    }
  }
}

void check_all_gather(const std::shared_ptr<Communicator>& comm, int salt, int64_t max_count = INT64_MAX) {
  const int w = comm->size();
  for (auto type : kTypes) {
    for (int64_t count : counts_for(type)) {
      if (count > max_count) continue;
      std::vector<torch::Tensor> parts;
      for (int r = 0; r < w; ++r) parts.push_back(rank_data(r, count, type, salt).reshape(shape_of(count)));
      const auto expected = torch::cat(parts);
      for (bool contiguous : {true, false}) {
        auto mine = contiguous ? parts[comm->rank()] : non_contiguous(parts[comm->rank()]);
        auto gathered = comm->all_gather(mine);
        ASSERT_TRUE(gathered.equal(expected)) << label(type, count, contiguous, "all_gather");
        auto into = torch::full_like(expected, 1);
        comm->all_gather_into(into, mine);
        ASSERT_TRUE(into.equal(expected)) << label(type, count, contiguous, "all_gather_into");
      }
    }
  }
}

void check_reduce_scatter(const std::shared_ptr<Communicator>& comm, int salt, int64_t max_count = INT64_MAX) {
  const int w = comm->size();
  for (auto type : kTypes) {
    for (int64_t count : counts_for(type)) {
      if (count > max_count) continue;
      // Input [w * rows, cols]; rank r receives block r of the reduction. The
      // largest inputs keep their total size (blocks of count / w).
      const int64_t block = count > 65536 ? count / w : count;
      auto block_shape = shape_of(block);
      auto full_shape = block_shape;
      full_shape[0] *= w;
      std::vector<torch::Tensor> inputs;
      for (int r = 0; r < w; ++r) inputs.push_back(rank_data(r, block * w, type, salt).reshape(full_shape));
      for (auto op : ops_for(type, count)) {
        const auto reduced = host_reduce(inputs, op);
        const auto expected = reduced.narrow(0, block_shape[0] * comm->rank(), block_shape[0]);
        for (bool contiguous : {true, false}) {
          auto mine = contiguous ? inputs[comm->rank()] : non_contiguous(inputs[comm->rank()]);
          auto out = comm->reduce_scatter(mine, op);
          ASSERT_TRUE(out.equal(expected))
              << label(type, block, contiguous, "reduce_scatter") << " " << reduce_op_name(op) << ": "
              << first_difference(out, expected);
          auto into = torch::full_like(expected, 1);
          comm->reduce_scatter_into(into, mine, op);
          ASSERT_TRUE(into.equal(expected))
              << label(type, block, contiguous, "reduce_scatter_into") << " " << reduce_op_name(op);
        }
      }
    }
  }
}

void check_broadcast(const std::shared_ptr<Communicator>& comm, int salt, int64_t max_count = INT64_MAX) {
  const int w = comm->size();
  for (int root : {0, w - 1}) {
    for (auto type : kTypes) {
      for (int64_t count : counts_for(type)) {
      if (count > max_count) continue;
        const auto expected = rank_data(root, count, type, salt).reshape(shape_of(count));
        for (bool contiguous : {true, false}) {
          auto base = rank_data(comm->rank(), count, type, salt).reshape(shape_of(count));
          auto mine = contiguous ? base.clone() : non_contiguous(base);
          comm->broadcast(mine, root);
          ASSERT_TRUE(mine.equal(expected)) << label(type, count, contiguous, "broadcast") << " root " << root;
        }
      }
    }
  }
}

TEST(Collectives, AllReduceEveryDtypeSizeLayoutAndOp) { check_all_reduce(world(), 1); }
TEST(Collectives, AllGatherEveryDtypeSizeAndLayout) { check_all_gather(world(), 2); }
TEST(Collectives, ReduceScatterEveryDtypeSizeLayoutAndOp) { check_reduce_scatter(world(), 3); }
TEST(Collectives, BroadcastEveryDtypeSizeLayoutAndRoot) { check_broadcast(world(), 4); }

// The same checks with 40-byte messages: counts that do not divide the
// chunk, chunks that straddle rank blocks (all_gather / reduce_scatter).
TEST(Chunked, AllReduce) { check_all_reduce(chunked_world(), 5, 4099); }
TEST(Chunked, AllGather) { check_all_gather(chunked_world(), 6, 4099); }
TEST(Chunked, ReduceScatter) { check_reduce_scatter(chunked_world(), 7, 1000); }
TEST(Chunked, Broadcast) { check_broadcast(chunked_world(), 8, 4099); }

TEST(Chunked, BroadcastString) {
  auto comm = chunked_world();
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>('a' + i % 26);
  EXPECT_EQ(comm->broadcast_string(comm->rank() == 0 ? text : "x", 0), text);
  EXPECT_EQ(comm->broadcast_string(comm->rank() == comm->size() - 1 ? "" : "not me", comm->size() - 1), "");
}

TEST(Collectives, RandomFloatsSumWithinReassociation) {
  // Non-integer data: MPI may add in another order than the host.
  auto comm = world();
  const int w = comm->size();
  for (auto type : {torch::kFloat32, torch::kFloat64}) {
    std::vector<torch::Tensor> parts;
    for (int r = 0; r < w; ++r) {
      auto gen = torch::make_generator<at::CPUGeneratorImpl>(31 + r);
      parts.push_back(torch::randn({100000}, gen, torch::kFloat64).to(type));
    }
    auto mine = parts[comm->rank()].clone();
    comm->all_reduce(mine, ReduceOp::Avg);
    const double tol = type == torch::kFloat32 ? 1e-6 : 1e-14;
    EXPECT_TRUE(test::AllClose(mine, host_reduce(parts, ReduceOp::Avg), tol, tol));
  }
}

TEST(Collectives, ScalarsAndFlags) {
  auto comm = world();
  const int w = comm->size();
  const double r = comm->rank();
  EXPECT_DOUBLE_EQ(comm->all_reduce_scalar(r + 1, ReduceOp::Sum), w * (w + 1) / 2.0);
  EXPECT_DOUBLE_EQ(comm->all_reduce_scalar(r + 1, ReduceOp::Avg), (w + 1) / 2.0);
  EXPECT_DOUBLE_EQ(comm->all_reduce_scalar(r + 1, ReduceOp::Max), w);
  EXPECT_DOUBLE_EQ(comm->all_reduce_scalar(r + 1, ReduceOp::Min), 1);
  EXPECT_TRUE(comm->any(comm->rank() == w - 1));
  EXPECT_FALSE(comm->any(false));
  EXPECT_NO_THROW(comm->barrier());
  auto zero_dim = torch::tensor(static_cast<double>(comm->rank()));
  auto gathered = comm->all_gather(zero_dim);
  EXPECT_TRUE(gathered.equal(torch::arange(w, torch::kFloat64)));
}

TEST(Async, ManyInFlightCompleteInOrderWithCorrectValues) {
  auto comm = world();
  const int w = comm->size();
  std::vector<torch::Tensor> tensors;
  std::vector<std::shared_ptr<Work>> works;
  for (int i = 0; i < 12; ++i) {
    tensors.push_back(rank_data(comm->rank(), 1000 + 37 * i, torch::kFloat32, 50 + i));
    works.push_back(comm->all_reduce_async(tensors.back(), i % 2 ? ReduceOp::Avg : ReduceOp::Sum,
                                           /*validate=*/i % 3 != 0));
  }
  for (int i = 11; i >= 0; --i) works[i]->wait();  // waiting out of order is fine
  for (int i = 0; i < 12; ++i) {
    std::vector<torch::Tensor> parts;
    for (int r = 0; r < w; ++r) parts.push_back(rank_data(r, 1000 + 37 * i, torch::kFloat32, 50 + i));
    EXPECT_TRUE(tensors[i].equal(host_reduce(parts, i % 2 ? ReduceOp::Avg : ReduceOp::Sum))) << i;
    EXPECT_TRUE(works[i]->test());
  }
  // Blocking collectives of this thread do not interleave with the async channel.
  auto t = rank_data(comm->rank(), 10, torch::kFloat64, 99);
  auto work = comm->all_reduce_async(t, ReduceOp::Sum);
  EXPECT_EQ(comm->all_reduce_scalar(1.0, ReduceOp::Sum), w);
  work->wait();
  work->wait();  // idempotent
}

// ---- errors -------------------------------------------------------------------

// Runs `call` on every rank and checks every rank raises an mgca::Error that
// carries its rank and location and contains each of `needles`.
template <typename Call>
void expect_error_everywhere(Call call, const std::vector<std::string>& needles) {
  auto comm = world();
  bool raised = false;
  try {
    call();
  } catch (const Error& error) {
    raised = true;
    const std::string text = error.what();
    EXPECT_EQ(error.rank(), comm->rank()) << text;
    EXPECT_NE(error.location().find("src/comm/"), std::string::npos) << text;
    EXPECT_EQ(text.rfind(fmt::format("[rank {}] src/comm/", comm->rank()), 0), 0u) << text;
    for (const auto& needle : needles) EXPECT_NE(text.find(needle), std::string::npos) << "missing '" << needle << "' in: " << text;
  }
  EXPECT_TRUE(raised) << "no error raised";
  // The communicator is still usable and in step on every rank.
  EXPECT_EQ(comm->all_reduce_scalar(1.0, ReduceOp::Sum), comm->size());
}

TEST(Errors, ShapeMismatchNamesEveryRank) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "needs two ranks";
  expect_error_everywhere(
      [&] {
        auto t = torch::zeros({4, comm->rank() == 1 ? 9 : 8});
        comm->all_reduce(t, ReduceOp::Sum);
      },
      {"rank 0: all_reduce Float [4, 8] (sum)", "rank 1: all_reduce Float [4, 9] (sum)"});
}

TEST(Errors, DtypeMismatchInAllGather) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "needs two ranks";
  expect_error_everywhere(
      [&] { comm->all_gather(torch::zeros({3}, comm->rank() == 0 ? torch::kFloat32 : torch::kFloat64)); },
      {"rank 0: all_gather Float [3]", "rank 1: all_gather Double [3]"});
}

TEST(Errors, ReduceScatterOpMismatch) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "needs two ranks";
  const int w = comm->size();
  expect_error_everywhere(
      [&] { comm->reduce_scatter(torch::zeros({2 * w}), comm->rank() == 0 ? ReduceOp::Sum : ReduceOp::Max); },
      {fmt::format("rank 0: reduce_scatter Float [{}] (sum)", 2 * w),
       fmt::format("rank 1: reduce_scatter Float [{}] (max)", 2 * w)});
}

TEST(Errors, BroadcastRootMismatch) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "needs two ranks";
  expect_error_everywhere(
      [&] {
        auto t = torch::zeros({5}, torch::kInt64);
        comm->broadcast(t, comm->rank() == 0 ? 0 : 1);
      },
      {"rank 0: broadcast Long [5] (root 0)", "rank 1: broadcast Long [5] (root 1)"});
}

TEST(Errors, DifferentCollectivesOnDifferentRanks) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "needs two ranks";
  expect_error_everywhere(
      [&] {
        auto t = torch::zeros({2, 2});
        if (comm->rank() == 0) {
          comm->all_reduce(t);
        } else {
          comm->all_gather(t);
        }
      },
      {"rank 0: all_reduce Float [2, 2] (sum)", "rank 1: all_gather Float [2, 2]"});
  expect_error_everywhere(
      [&] {
        if (comm->rank() == 0) {
          comm->barrier();
        } else {
          comm->any(true);
        }
      },
      {"rank 0: barrier", "rank 1: all_reduce_scalar"});
  expect_error_everywhere(
      [&] {
        if (comm->rank() == 0) {
          comm->broadcast_string("x", 0);
        } else {
          auto t = torch::zeros({1});
          comm->broadcast(t, 0);
        }
      },
      {"rank 0: broadcast_string (root 0)", "rank 1: broadcast Float [1] (root 0)"});
}

TEST(Errors, AsyncMismatchSurfacesAtWait) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "needs two ranks";
  expect_error_everywhere(
      [&] {
        auto t = torch::zeros({comm->rank() == 1 ? 3 : 2});
        comm->all_reduce_async(t, ReduceOp::Sum)->wait();
      },
      {"rank 0: all_reduce Float [2] (sum)", "rank 1: all_reduce Float [3] (sum)"});
}

TEST(Errors, BadArgumentsFailBeforeAnythingMoves) {
  auto comm = world();
  const int w = comm->size();
  expect_error_everywhere(
      [&] {
        auto t = torch::ones({4}, torch::kInt64);
        comm->all_reduce(t, ReduceOp::Avg);
      },
      {"all_reduce: Avg needs a floating-point tensor, got Long [4]"});
  expect_error_everywhere([&] { comm->all_gather(torch::zeros({2}, torch::kComplexFloat)); },
                          {"dtype ComplexFloat is not supported"});
  expect_error_everywhere([&] { comm->reduce_scatter(torch::zeros({})); },
                          {fmt::format("reduce_scatter needs dim 0 divisible by the world size {}, got Float []", w)});
  if (w > 1) {
    expect_error_everywhere([&] { comm->reduce_scatter(torch::zeros({2 * w + 1})); },
                            {fmt::format("reduce_scatter needs dim 0 divisible by the world size {}", w)});
  }
  expect_error_everywhere(
      [&] {
        auto out = torch::zeros({w, 3});
        comm->all_gather_into(out, torch::zeros({2}));
      },
      {"all_gather_into: output must be a contiguous Float", fmt::format("[{}]", 2 * w)});
  expect_error_everywhere(
      [&] {
        auto t = torch::zeros({1});
        comm->broadcast(t, w);
      },
      {fmt::format("broadcast root {} outside [0, {})", w, w)});
  expect_error_everywhere(
      [&] {
        torch::Tensor undefined;
        comm->all_reduce(undefined);
      },
      {"all_reduce: undefined tensor"});
  expect_error_everywhere([&] { comm->all_reduce_async(torch::zeros({4, 4}).t()); },
                          {"all_reduce_async needs a contiguous tensor"});
}

TEST(Errors, TooManyDimensionsForTheCheck) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "the check runs with two ranks or more";
  expect_error_everywhere(
      [&] {
        auto t = torch::zeros(std::vector<int64_t>(9, 1));
        comm->all_reduce(t);
      },
      {"the cross-rank check supports at most 8 dims"});
}

TEST(Backend, DescribeAndDeviceWithoutGpu) {
  auto comm = world();
  EXPECT_EQ(comm->device_index(), -1);  // CPU libtorch here
  EXPECT_NE(comm->describe().find("MPI (host)"), std::string::npos) << comm->describe();
  EXPECT_NE(comm->describe().find(fmt::format("{} ranks", comm->size())), std::string::npos);
}

TEST(Backend, NcclRequestedWithoutGpuFailsNamingEveryRank) {
  CommOptions options;
  options.backend = Backend::Nccl;
  bool raised = false;
  try {
    Communicator::world(options);
  } catch (const Error& error) {
    raised = true;
    const std::string text = error.what();
    EXPECT_NE(text.find("backend nccl was requested but NCCL cannot be used on every rank"), std::string::npos)
        << text;
    EXPECT_NE(text.find("rank 0: "), std::string::npos) << text;
    EXPECT_NE(text.find(fmt::format("rank {}: ", world()->size() - 1)), std::string::npos) << text;
  }
  EXPECT_TRUE(raised);
}

}  // namespace
}  // namespace mgca::comm
