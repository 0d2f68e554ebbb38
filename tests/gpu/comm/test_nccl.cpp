// NCCL on a GPU: the raw-pointer communicator (CUDA toolkit only) and the
// tensor adapter (CUDA libtorch), world size 1, checked against host
// results. These compile in every build and skip with the reason when there
// is no CUDA device (or no CUDA libtorch for the tensor tests).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/comm/differentiable.h"
#include "mgca/comm/grad_sync.h"
#include "mgca/comm/nccl.h"
#include "mgca/comm/sync_batchnorm.h"
#include "mgca/util/error.h"
#include "support/tensor_checks.h"

namespace mgca::comm {
namespace {

// The raw layer needs a CUDA device; MPI (singleton) bootstraps the id.
std::string no_device_reason() {
  std::string why;
  if (nccl::device_count(&why) > 0) return "";
  return why.empty() ? "unknown reason" : why;
}

void ensure_mpi() {
  if (!is_initialized()) init(nullptr, nullptr);
}

#define SKIP_WITHOUT_DEVICE()                                              \
  do {                                                                     \
    const std::string mgca_why = no_device_reason();                       \
    if (!mgca_why.empty()) GTEST_SKIP() << "no CUDA device: " << mgca_why; \
  } while (0)

#define SKIP_WITHOUT_TORCH_CUDA()                                                                   \
  do {                                                                                              \
    SKIP_WITHOUT_DEVICE();                                                                          \
    if (!torch::cuda::is_available())                                                               \
      GTEST_SKIP() << "no CUDA device: libtorch sees none (this build's libtorch is CPU-only?)";     \
  } while (0)

struct TypeCase {
  nccl::DataType type;
  torch::ScalarType torch_type;
};
const std::vector<TypeCase> kTypes = {
    {nccl::DataType::Float32, torch::kFloat32}, {nccl::DataType::Float64, torch::kFloat64},
    {nccl::DataType::BFloat16, torch::kBFloat16}, {nccl::DataType::Float16, torch::kHalf},
    {nccl::DataType::Int64, torch::kInt64},     {nccl::DataType::Int32, torch::kInt32},
    {nccl::DataType::UInt8, torch::kUInt8},     {nccl::DataType::Int8, torch::kInt8},
    {nccl::DataType::Bool, torch::kBool}};

torch::Tensor host_data(int64_t count, torch::ScalarType type, int seed) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(seed);
  if (type == torch::kBool) return torch::randint(0, 2, {count}, gen, torch::kInt64).to(torch::kBool);
  return torch::randint(-60, 61, {count}, gen, torch::kInt64).to(type).contiguous();
}

// Device buffer that frees itself.
struct DeviceBuffer {
  explicit DeviceBuffer(size_t bytes) : pointer(nccl::device_alloc(bytes)) {}
  ~DeviceBuffer() { nccl::device_free(pointer); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* pointer;
};

TEST(NcclRaw, EveryCollectiveEveryDtypeMatchesTheHostOnOneRank) {
  SKIP_WITHOUT_DEVICE();
  ensure_mpi();
  nccl::NcclComm::Options options;
  options.device = 0;
  options.timeout_seconds = 120;
  auto comm = nccl::NcclComm::create(MPI_COMM_SELF, options);
  ASSERT_EQ(comm->size(), 1);
  // Work is enqueued on a compute stream and only that stream is
  // synchronised: the collective must be ordered between the copies by events.
  nccl::Stream compute = nccl::create_stream();
  for (const auto& c : kTypes) {
    for (int64_t count : {int64_t{0}, int64_t{1}, int64_t{4099}, (int64_t{3} << 20) / int64_t(nccl::element_size(c.type))}) {
      const auto input = host_data(count, c.torch_type, 11);
      const size_t bytes = static_cast<size_t>(count) * nccl::element_size(c.type);
      DeviceBuffer in(bytes), out(bytes);
      auto result = torch::empty_like(input);
      std::vector<ReduceOp> ops = {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min};
      if (c10::isFloatingType(c.torch_type)) ops.push_back(ReduceOp::Avg);
      for (ReduceOp op : ops) {
        nccl::copy_to_device(in.pointer, input.data_ptr(), bytes, compute);
        comm->all_reduce(in.pointer, out.pointer, count, c.type, op, compute)->wait_on(compute);
        nccl::copy_to_host(result.data_ptr(), out.pointer, bytes, compute);
        nccl::synchronize(compute);
        EXPECT_TRUE(result.equal(input)) << "all_reduce " << nccl::data_type_name(c.type) << " x" << count;
        // In place.
        comm->all_reduce(in.pointer, in.pointer, count, c.type, op, compute)->wait_on(compute);
        nccl::copy_to_host(result.data_ptr(), in.pointer, bytes, compute);
        nccl::synchronize(compute);
        EXPECT_TRUE(result.equal(input)) << "in-place all_reduce " << nccl::data_type_name(c.type);
      }
      nccl::copy_to_device(in.pointer, input.data_ptr(), bytes, compute);
      comm->all_gather(in.pointer, out.pointer, count, c.type, compute)->wait_on(compute);
      nccl::copy_to_host(result.data_ptr(), out.pointer, bytes, compute);
      nccl::synchronize(compute);
      EXPECT_TRUE(result.equal(input)) << "all_gather " << nccl::data_type_name(c.type);
      comm->reduce_scatter(in.pointer, out.pointer, count, c.type, ReduceOp::Sum, compute)->wait_on(compute);
      nccl::copy_to_host(result.data_ptr(), out.pointer, bytes, compute);
      nccl::synchronize(compute);
      EXPECT_TRUE(result.equal(input)) << "reduce_scatter " << nccl::data_type_name(c.type);
      comm->broadcast(in.pointer, out.pointer, count, c.type, 0, compute)->wait_on(compute);
      nccl::copy_to_host(result.data_ptr(), out.pointer, bytes, compute);
      nccl::synchronize(compute);
      EXPECT_TRUE(result.equal(input)) << "broadcast " << nccl::data_type_name(c.type);
    }
  }
  EXPECT_NO_THROW(comm->check_async_error());
  nccl::destroy_stream(compute);
}

TEST(NcclRaw, BadArgumentsAreClearErrors) {
  SKIP_WITHOUT_DEVICE();
  ensure_mpi();
  nccl::NcclComm::Options options;
  options.device = 0;
  auto comm = nccl::NcclComm::create(MPI_COMM_SELF, options);
  DeviceBuffer buffer(16);
  EXPECT_THROW(comm->all_reduce(buffer.pointer, buffer.pointer, 2, nccl::DataType::Int64, ReduceOp::Avg, nullptr),
               Error);
  EXPECT_THROW(comm->broadcast(buffer.pointer, buffer.pointer, 2, nccl::DataType::Int64, 3, nullptr), Error);
  options.device = 1 << 20;
  EXPECT_THROW(nccl::NcclComm::create(MPI_COMM_SELF, options), Error);
}

// ---- the tensor adapter -------------------------------------------------------

std::shared_ptr<Communicator> device_world() {
  ensure_mpi();
  static auto comm = [] {
    CommOptions options;
    options.backend = Backend::Nccl;
    options.timeout_seconds = 120;
    return Communicator::world(options);
  }();
  return comm;
}

TEST(NcclTensors, CollectivesOnDeviceTensorsMatchTheHost) {
  SKIP_WITHOUT_TORCH_CUDA();
  auto comm = device_world();
  ASSERT_GE(comm->device_index(), 0);
  const torch::Device device(torch::kCUDA, comm->device_index());
  EXPECT_NE(comm->describe().find("NCCL"), std::string::npos) << comm->describe();
  const int w = comm->size();
  for (const auto& c : kTypes) {
    for (int64_t count : {int64_t{0}, int64_t{6}, int64_t{65536}, int64_t{1} << 20}) {
      const auto host = host_data(count, c.torch_type, 5).reshape({-1, count % 2 == 0 && count > 0 ? 2 : 1});
      auto x = host.to(device);
      comm->all_reduce(x, ReduceOp::Sum);  // one rank: the identity
      EXPECT_TRUE(x.cpu().equal(host)) << "all_reduce " << c10::toString(c.torch_type) << " x" << count;
      auto strided = host.t().contiguous().t().to(device);  // non-contiguous on the device
      if (count > 2) {
        ASSERT_FALSE(strided.is_contiguous());
      }
      comm->all_reduce(strided, ReduceOp::Max);
      EXPECT_TRUE(strided.cpu().equal(host));
      EXPECT_TRUE(comm->all_gather(host.to(device)).cpu().equal(host));
      EXPECT_TRUE(comm->reduce_scatter(host.to(device), ReduceOp::Sum).cpu().equal(host));
      auto b = host.to(device);
      comm->broadcast(b, 0);
      EXPECT_TRUE(b.cpu().equal(host));
      if (c10::isFloatingType(c.torch_type) && count > 0) {
        auto a = host.to(device);
        auto work = comm->all_reduce_async(a, ReduceOp::Avg);
        work->wait();  // orders the current stream; .cpu() then reads the result
        EXPECT_TRUE(a.cpu().equal(host / w));
      }
    }
  }
}

TEST(NcclTensors, MpiBackendStagesDeviceTensorsThroughTheHost) {
  SKIP_WITHOUT_TORCH_CUDA();
  ensure_mpi();
  CommOptions options;
  options.backend = Backend::Mpi;
  auto comm = Communicator::world(options);
  EXPECT_EQ(comm->device_index(), -1);
  const torch::Device device(torch::kCUDA, 0);
  const auto host = torch::randint(-50, 50, {1000, 3}, torch::kInt64).to(torch::kFloat32);
  auto x = (host * 2).to(device);  // pending device work before the collective
  comm->all_reduce(x, ReduceOp::Sum);
  EXPECT_TRUE(x.cpu().equal(host * 2));
  EXPECT_TRUE(comm->all_gather(host.to(device)).cpu().equal(host));
  auto a = (host + 1).to(device);
  auto work = comm->all_reduce_async(a, ReduceOp::Avg);
  work->wait();
  EXPECT_TRUE(a.cpu().equal(host + 1));
}

TEST(NcclTensors, GatherWithGradOnDevice) {
  SKIP_WITHOUT_TORCH_CUDA();
  auto comm = device_world();
  const torch::Device device(torch::kCUDA, comm->device_index());
  auto x = torch::randn({4, 3}, torch::kFloat64).to(device).requires_grad_(true);
  auto c = torch::randn({4 * comm->size(), 3}, torch::kFloat64).to(device);
  (all_gather_with_grad(x, comm) * c).sum().backward();
  EXPECT_TRUE(test::AllClose(x.grad().cpu(), (comm->size() * c).narrow(0, 0, 4).cpu(), 1e-12, 1e-12));
}

TEST(NcclTensors, SyncBatchNormOnDeviceEqualsBatchNorm) {
  SKIP_WITHOUT_TORCH_CUDA();
  auto comm = device_world();
  const torch::Device device(torch::kCUDA, comm->device_index());
  auto x_host = torch::randn({8, 6, 5}) * 3 + 2;
  auto g_host = torch::randn({8, 6, 5});
  torch::nn::BatchNorm1d reference(6);
  auto xr = x_host.clone().requires_grad_(true);
  auto yr = reference->forward(xr);
  (yr * g_host).sum().backward();

  SyncBatchNormOptions bn_options{6};
  SyncBatchNorm sync(bn_options, comm);
  sync->to(device);
  auto x = x_host.to(device).requires_grad_(true);
  auto y = sync->forward(x);
  (y * g_host.to(device)).sum().backward();
  EXPECT_TRUE(test::AllClose(y.cpu(), yr, 1e-5, 1e-6));
  EXPECT_TRUE(test::AllClose(x.grad().cpu(), xr.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(test::AllClose(sync->weight.grad().cpu(), reference->weight.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(test::AllClose(sync->bias.grad().cpu(), reference->bias.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(test::AllClose(sync->running_mean.cpu(), reference->running_mean, 1e-5, 1e-6));
  EXPECT_TRUE(test::AllClose(sync->running_var.cpu(), reference->running_var, 1e-5, 1e-6));
}

TEST(NcclTensors, GradSyncOnDevice) {
  SKIP_WITHOUT_TORCH_CUDA();
  auto comm = device_world();
  const torch::Device device(torch::kCUDA, comm->device_index());
  torch::manual_seed(9);
  torch::nn::Sequential model(torch::nn::Linear(16, 32), torch::nn::Tanh(), torch::nn::Linear(32, 4));
  model->to(device);
  GradSyncOptions options;
  options.bucket_cap_mb = 1.0 / 1024;
  options.first_bucket_cap_mb = 0.1 / 1024;
  GradSync sync(model->named_parameters(), comm, options);
  auto x = torch::randn({8, 16}).to(device);
  model->forward(x).square().sum().backward();
  std::vector<torch::Tensor> local;
  for (auto& p : model->parameters()) local.push_back(p.grad().cpu());
  sync.finalize();
  size_t i = 0;
  for (auto& p : model->parameters()) {
    EXPECT_TRUE(test::AllClose(p.grad().cpu(), local[i++], 1e-6, 1e-7));  // one rank: the average is the local grad
  }
  EXPECT_EQ(sync.stats().launched_during_backward, static_cast<int>(sync.buckets().size()));
}

}  // namespace
}  // namespace mgca::comm
