// The NCCL tensor adapter: CUDA tensors → nccl::NcclComm on c10 CUDA streams.
// Compiled only where libtorch has CUDA (MGCA_TORCH_HAS_CUDA).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "device_backend.h"
#include "mgca/util/error.h"

namespace mgca::comm::detail {
namespace {

nccl::DataType data_type(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat32: return nccl::DataType::Float32;
    case torch::kFloat64: return nccl::DataType::Float64;
    case torch::kHalf: return nccl::DataType::Float16;
    case torch::kBFloat16: return nccl::DataType::BFloat16;
    case torch::kInt64: return nccl::DataType::Int64;
    case torch::kInt32: return nccl::DataType::Int32;
    case torch::kInt8: return nccl::DataType::Int8;
    case torch::kUInt8: return nccl::DataType::UInt8;
    case torch::kBool: return nccl::DataType::Bool;
    default: MGCA_FAIL("dtype {} is not supported by the NCCL backend", c10::toString(type));
  }
}

// The communication stream comes from c10's pool, so the caching allocator
// knows it (record_stream) and profilers show it as a torch stream.
class NcclTensorBackend final : public DeviceBackend {
 public:
  NcclTensorBackend(MPI_Comm comm, int device, double timeout_seconds, const std::string& name)
      : device_(device),
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/true, static_cast<c10::DeviceIndex>(device))) {
    nccl::NcclComm::Options options;
    options.device = device;
    options.timeout_seconds = timeout_seconds;
    options.stream = stream_.stream();
    options.name = name;
    comm_ = nccl::NcclComm::create(comm, options);
  }

  int device_index() const override { return device_; }
  std::string describe() const override { return fmt::format("NCCL {} on cuda:{}", nccl::version(), device_); }

  void all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    check(tensor, "all_reduce");
    c10::cuda::CUDAGuard guard(tensor.device());
    const auto compute = c10::cuda::getCurrentCUDAStream(tensor.device().index());
    auto done = comm_->all_reduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                                  data_type(tensor.scalar_type()), op, compute.stream());
    done->wait_on(compute.stream());
  }

  void all_gather(torch::Tensor& output, const torch::Tensor& input) override {
    check(input, "all_gather");
    check(output, "all_gather");
    c10::cuda::CUDAGuard guard(input.device());
    const auto compute = c10::cuda::getCurrentCUDAStream(input.device().index());
    auto done = comm_->all_gather(input.data_ptr(), output.data_ptr(), static_cast<size_t>(input.numel()),
                                  data_type(input.scalar_type()), compute.stream());
    done->wait_on(compute.stream());
  }

  void reduce_scatter(torch::Tensor& output, const torch::Tensor& input, ReduceOp op) override {
    check(input, "reduce_scatter");
    check(output, "reduce_scatter");
    c10::cuda::CUDAGuard guard(input.device());
    const auto compute = c10::cuda::getCurrentCUDAStream(input.device().index());
    auto done = comm_->reduce_scatter(input.data_ptr(), output.data_ptr(), static_cast<size_t>(output.numel()),
                                      data_type(input.scalar_type()), op, compute.stream());
    done->wait_on(compute.stream());
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    check(tensor, "broadcast");
    c10::cuda::CUDAGuard guard(tensor.device());
    const auto compute = c10::cuda::getCurrentCUDAStream(tensor.device().index());
    auto done = comm_->broadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                                 data_type(tensor.scalar_type()), root, compute.stream());
    done->wait_on(compute.stream());
  }

  std::shared_ptr<nccl::Event> start_all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    check(tensor, "all_reduce_async");
    c10::cuda::CUDAGuard guard(tensor.device());
    const auto compute = c10::cuda::getCurrentCUDAStream(tensor.device().index());
    // The caller may drop the tensor before the collective ran: the caching
    // allocator must not hand its memory out until the stream is done.
    tensor.record_stream(stream_);
    return comm_->all_reduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                             data_type(tensor.scalar_type()), op, compute.stream());
  }

  void join(nccl::Event& done) override {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    done.wait_on(c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_)).stream());
  }

 private:
  void check(const torch::Tensor& tensor, const char* what) const {
    MGCA_CHECK(tensor.is_cuda() && tensor.device().index() == device_ && tensor.is_contiguous(),
               "{}: the NCCL communicator of this rank works on contiguous tensors on cuda:{}, got a {} "
               "tensor on {}",
               what, device_, tensor.is_contiguous() ? "contiguous" : "non-contiguous", tensor.device().str());
  }

  int device_;
  c10::cuda::CUDAStream stream_;
  std::unique_ptr<nccl::NcclComm> comm_;
};

}  // namespace

bool device_backend_usable(std::string* why) {
  std::string reason;
  if (nccl::device_count(&reason) == 0) {
    if (why) *why = reason;
    return false;
  }
  if (!torch::cuda::is_available()) {
    if (why) *why = "libtorch sees no CUDA device";
    return false;
  }
  return true;
}

std::unique_ptr<DeviceBackend> make_nccl_backend(MPI_Comm comm, int device, double timeout_seconds,
                                                 const std::string& name) {
  return std::make_unique<NcclTensorBackend>(comm, device, timeout_seconds, name);
}

}  // namespace mgca::comm::detail
