// NCCL on raw device pointers (CUDA toolkit only; compiled when MGCA_HAVE_NCCL).
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <thread>

#include "mgca/comm/nccl.h"
#include "mgca/util/error.h"
#include "mpi_runtime.h"

namespace mgca::comm::nccl {
namespace {

[[noreturn]] void cuda_fail(cudaError_t code, const char* call, const char* file, int line) {
  util::detail::raise(file, line,
                      fmt::format("{} failed: {} ({})", call, cudaGetErrorString(code), cudaGetErrorName(code)));
}

[[noreturn]] void nccl_fail(ncclResult_t code, ncclComm_t comm, const char* call, const char* file, int line) {
  const char* last = ncclGetLastError(comm);
  util::detail::raise(file, line,
                      fmt::format("{} failed: {}{}{}", call, ncclGetErrorString(code),
                                  last && *last ? ": " : "", last ? last : ""));
}

}  // namespace
}  // namespace mgca::comm::nccl

#define MGCA_CUDA(call)                                                                       \
  do {                                                                                        \
    const cudaError_t mgca_cuda_code = (call);                                                \
    if (mgca_cuda_code != cudaSuccess) ::mgca::comm::nccl::cuda_fail(mgca_cuda_code, #call, __FILE__, __LINE__); \
  } while (0)
#define MGCA_NCCL(handle, call)                                                                 \
  do {                                                                                        \
    const ncclResult_t mgca_nccl_code = (call);                                               \
    if (mgca_nccl_code != ncclSuccess) ::mgca::comm::nccl::nccl_fail(mgca_nccl_code, handle, #call, __FILE__, __LINE__); \
  } while (0)

namespace mgca::comm::nccl {
namespace {

ncclDataType_t nccl_type(DataType type) {
  switch (type) {
    case DataType::Float32: return ncclFloat32;
    case DataType::Float64: return ncclFloat64;
    case DataType::Float16: return ncclFloat16;
    case DataType::BFloat16: return ncclBfloat16;
    case DataType::Int64: return ncclInt64;
    case DataType::Int32: return ncclInt32;
    case DataType::Int8: return ncclInt8;
    case DataType::UInt8:
    case DataType::Bool: return ncclUint8;  // bool is one byte 0/1: reduced with max/min only
  }
  MGCA_FAIL("unknown NCCL data type {}", static_cast<int>(type));
}

bool is_floating(DataType type) {
  return type == DataType::Float32 || type == DataType::Float64 || type == DataType::Float16 ||
         type == DataType::BFloat16;
}

ncclRedOp_t nccl_op(DataType type, ReduceOp op) {
  MGCA_CHECK(op != ReduceOp::Avg || is_floating(type), "NCCL Avg needs a floating-point type, got {}",
             data_type_name(type));
  if (type == DataType::Bool) return op == ReduceOp::Min ? ncclMin : ncclMax;  // any / all
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  MGCA_FAIL("unknown reduction {}", static_cast<int>(op));
}

}  // namespace

// Named, not file-local: NcclComm::Impl (declared in the header) holds it.
class CudaEvent final : public Event {
 public:
  CudaEvent(int device, cudaStream_t stream) : device_(device) {
    MGCA_CUDA(cudaSetDevice(device));
    MGCA_CUDA(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    MGCA_CUDA(cudaEventRecord(event_, stream));
  }
  ~CudaEvent() override { cudaEventDestroy(event_); }  // released once complete
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  void wait_on(Stream stream) override {
    MGCA_CUDA(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), event_, 0));
  }
  void synchronize() override { MGCA_CUDA(cudaEventSynchronize(event_)); }
  bool query() override {
    const cudaError_t code = cudaEventQuery(event_);
    if (code == cudaErrorNotReady) return false;
    MGCA_CUDA(code);
    return true;
  }
  // For the watchdog: done, pending, or the CUDA error text.
  cudaError_t raw_query() const { return cudaEventQuery(event_); }
  cudaEvent_t raw() const { return event_; }
  int device() const { return device_; }

 private:
  int device_;
  cudaEvent_t event_ = nullptr;
};

bool compiled() { return true; }

int device_count(std::string* why) {
  int count = 0;
  const cudaError_t code = cudaGetDeviceCount(&count);
  if (code != cudaSuccess) {
    // No driver, an old driver, or no device: all mean "no GPU here".
    cudaGetLastError();  // clear the sticky-free error state of the runtime
    if (why) *why = fmt::format("cudaGetDeviceCount: {}", cudaGetErrorString(code));
    return 0;
  }
  if (count == 0 && why) *why = "no CUDA device is visible";
  return count;
}

std::string device_uuid(int device) {
  cudaDeviceProp properties{};
  MGCA_CUDA(cudaGetDeviceProperties(&properties, device));
  const auto* b = reinterpret_cast<const unsigned char*>(properties.uuid.bytes);
  return fmt::format("GPU-{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                     b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                     b[15]);
}

std::string version() {
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess) return "unknown";
  // Since 2.9 the code is major*10000 + minor*100 + patch.
  return fmt::format("{}.{}.{}", code / 10000, (code / 100) % 100, code % 100);
}

std::shared_ptr<Event> record_event(Stream stream, int device) {
  return std::make_shared<CudaEvent>(device, static_cast<cudaStream_t>(stream));
}

// ---- the communicator ----------------------------------------------------------

struct NcclComm::Impl final : detail::Monitor {
  struct Pending {
    std::shared_ptr<CudaEvent> done;
    std::chrono::steady_clock::time_point start;
    std::string what;
  };

  ncclComm_t comm = nullptr;
  int rank = 0;
  int size = 1;
  int device = 0;
  cudaStream_t stream = nullptr;
  bool own_stream = false;
  double timeout_seconds = 600;
  std::string name;
  std::atomic<bool> aborted{false};
  std::atomic<bool> broken{false};  // a launch failed
  std::mutex mutex;  // pending
  std::deque<Pending> pending;

  ~Impl() override {
    detail::remove_monitor(this);
    if (!aborted.load() && comm) {
      // Errors are ignored here: at process exit the CUDA runtime may already be gone.
      cudaSetDevice(device);
      // ncclCommDestroy (and a stream synchronisation) would wait for work
      // that may never finish: a broken or stuck communicator is aborted.
      if (healthy() && drained(timeout_seconds)) {
        if (stream) cudaStreamSynchronize(stream);
        ncclCommDestroy(comm);
      } else {
        ncclCommAbort(comm);
      }
    }
    if (own_stream && stream) cudaStreamDestroy(stream);
  }

  // No failed launch and no asynchronous NCCL error.
  bool healthy() {
    if (broken.load()) return false;
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &async) != ncclSuccess) return false;
    return async == ncclSuccess || async == ncclInProgress;
  }

  // Waits up to `seconds` for the pending collectives to finish on the device.
  bool drained(double seconds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::lock_guard<std::mutex> lock(mutex);
    while (!pending.empty()) {
      const cudaError_t code = pending.front().done->raw_query();
      if (code == cudaErrorNotReady) {
        if (std::chrono::steady_clock::now() > deadline || !healthy()) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      if (code != cudaSuccess && code != cudaErrorCudartUnloading) return false;
      pending.pop_front();
    }
    return true;
  }

  // Watchdog thread: drop finished work, then report an async NCCL error or
  // the oldest collective past the timeout.
  std::string poll(std::chrono::steady_clock::time_point now) override {
    if (aborted.load()) return {};
    cudaSetDevice(device);
    std::lock_guard<std::mutex> lock(mutex);
    while (!pending.empty()) {
      const cudaError_t code = pending.front().done->raw_query();
      if (code == cudaErrorNotReady) break;
      if (code != cudaSuccess) {
        return fmt::format("{} on cuda:{}: CUDA error after collective {}: {}", name, device,
                           pending.front().what, cudaGetErrorString(code));
      }
      pending.pop_front();
    }
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &async) == ncclSuccess && async != ncclSuccess &&
        async != ncclInProgress) {
      const char* last = ncclGetLastError(comm);
      return fmt::format("{} on cuda:{}: asynchronous NCCL error: {}{}{}", name, device,
                         ncclGetErrorString(async), last && *last ? ": " : "", last ? last : "");
    }
    if (!pending.empty()) {
      const double waited = std::chrono::duration<double>(now - pending.front().start).count();
      if (waited > timeout_seconds) {
        return fmt::format(
            "{} collective {} on cuda:{} did not finish within {:g} s (a rank died, hangs, or skipped "
            "this collective)",
            name, pending.front().what, device, timeout_seconds);
      }
    }
    return {};
  }

  void abort() noexcept override {
    if (!aborted.exchange(true)) ncclCommAbort(comm);
  }

  // Orders the communication stream after `compute`, runs `launch`, records
  // and registers completion.
  template <typename Launch>
  std::shared_ptr<Event> run(Stream compute, std::string what, Launch launch) {
    MGCA_CHECK(!aborted.load(), "{}: the NCCL communicator was aborted", name);
    MGCA_CUDA(cudaSetDevice(device));
    {
      CudaEvent before(device, static_cast<cudaStream_t>(compute));
      MGCA_CUDA(cudaStreamWaitEvent(stream, before.raw(), 0));
    }
    try {
      launch();
    } catch (...) {
      broken = true;  // never ncclCommDestroy it now
      throw;
    }
    auto done = std::make_shared<CudaEvent>(device, stream);
    std::lock_guard<std::mutex> lock(mutex);
    pending.push_back(Pending{done, std::chrono::steady_clock::now(), std::move(what)});
    return done;
  }
};

NcclComm::NcclComm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NcclComm::~NcclComm() = default;

std::unique_ptr<NcclComm> NcclComm::create(MPI_Comm comm, const Options& options) {
  auto impl = std::make_unique<Impl>();
  MGCA_MPI(MPI_Comm_rank(comm, &impl->rank));
  MGCA_MPI(MPI_Comm_size(comm, &impl->size));
  impl->device = options.device;
  impl->timeout_seconds = options.timeout_seconds;
  impl->name = options.name;
  std::string why;
  const int count = device_count(&why);
  MGCA_CHECK(count > 0, "{}: no CUDA device ({})", options.name, why);
  MGCA_CHECK(options.device >= 0 && options.device < count, "{}: CUDA device {} outside [0, {})",
             options.name, options.device, count);
  MGCA_CUDA(cudaSetDevice(options.device));
  if (options.stream) {
    impl->stream = static_cast<cudaStream_t>(options.stream);
  } else {
    MGCA_CUDA(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
    impl->own_stream = true;
  }
  ncclUniqueId id{};
  if (impl->rank == 0) MGCA_NCCL(nullptr, ncclGetUniqueId(&id));
  {
    const std::string detail = fmt::format("({} ranks, cuda:{})", impl->size, options.device);
    detail::CollectiveGuard guard("NCCL communicator creation", &detail, options.timeout_seconds);
    MGCA_MPI(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm));
    MGCA_NCCL(nullptr, ncclCommInitRank(&impl->comm, impl->size, id, impl->rank));
  }
  detail::add_monitor(impl.get());
  return std::unique_ptr<NcclComm>(new NcclComm(std::move(impl)));
}

int NcclComm::rank() const { return impl_->rank; }
int NcclComm::size() const { return impl_->size; }
int NcclComm::device() const { return impl_->device; }
Stream NcclComm::stream() const { return impl_->stream; }

std::shared_ptr<Event> NcclComm::all_reduce(const void* send, void* recv, size_t count, DataType type,
                                            ReduceOp op, Stream compute) {
  const ncclRedOp_t nop = nccl_op(type, op);
  Impl& m = *impl_;
  return m.run(compute, fmt::format("all_reduce {} x{} {}", data_type_name(type), count, reduce_op_name(op)),
               [&] {
                 if (count > 0)
                   MGCA_NCCL(m.comm, ncclAllReduce(send, recv, count, nccl_type(type), nop, m.comm, m.stream));
               });
}

std::shared_ptr<Event> NcclComm::all_gather(const void* send, void* recv, size_t send_count, DataType type,
                                            Stream compute) {
  Impl& m = *impl_;
  return m.run(compute, fmt::format("all_gather {} x{}", data_type_name(type), send_count), [&] {
    if (send_count > 0)
      MGCA_NCCL(m.comm, ncclAllGather(send, recv, send_count, nccl_type(type), m.comm, m.stream));
  });
}

std::shared_ptr<Event> NcclComm::reduce_scatter(const void* send, void* recv, size_t recv_count,
                                                DataType type, ReduceOp op, Stream compute) {
  const ncclRedOp_t nop = nccl_op(type, op);
  Impl& m = *impl_;
  return m.run(compute,
               fmt::format("reduce_scatter {} x{} {}", data_type_name(type), recv_count, reduce_op_name(op)),
               [&] {
                 if (recv_count > 0)
                   MGCA_NCCL(m.comm,
                             ncclReduceScatter(send, recv, recv_count, nccl_type(type), nop, m.comm, m.stream));
               });
}

std::shared_ptr<Event> NcclComm::broadcast(const void* send, void* recv, size_t count, DataType type, int root,
                                           Stream compute) {
  Impl& m = *impl_;
  MGCA_CHECK(root >= 0 && root < m.size, "{}: broadcast root {} outside [0, {})", m.name, root, m.size);
  return m.run(compute, fmt::format("broadcast {} x{} from rank {}", data_type_name(type), count, root), [&] {
    if (count > 0)
      MGCA_NCCL(m.comm, ncclBroadcast(send, recv, count, nccl_type(type), root, m.comm, m.stream));
  });
}

void NcclComm::check_async_error() {
  ncclResult_t async = ncclSuccess;
  MGCA_NCCL(impl_->comm, ncclCommGetAsyncError(impl_->comm, &async));
  if (async != ncclSuccess && async != ncclInProgress) {
    nccl_fail(async, impl_->comm, "asynchronous NCCL operation", __FILE__, __LINE__);
  }
}

// ---- device helpers ------------------------------------------------------------

void set_device(int device) { MGCA_CUDA(cudaSetDevice(device)); }

void* device_alloc(size_t bytes) {
  void* pointer = nullptr;
  MGCA_CUDA(cudaMalloc(&pointer, std::max<size_t>(bytes, 1)));
  return pointer;
}

void device_free(void* pointer) {
  if (pointer) MGCA_CUDA(cudaFree(pointer));
}

Stream create_stream() {
  cudaStream_t stream = nullptr;
  MGCA_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return stream;
}

void destroy_stream(Stream stream) { MGCA_CUDA(cudaStreamDestroy(static_cast<cudaStream_t>(stream))); }

void synchronize(Stream stream) { MGCA_CUDA(cudaStreamSynchronize(static_cast<cudaStream_t>(stream))); }

void copy_to_device(void* device_dst, const void* host_src, size_t bytes, Stream stream) {
  if (bytes == 0) return;
  MGCA_CUDA(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice,
                            static_cast<cudaStream_t>(stream)));
}

void copy_to_host(void* host_dst, const void* device_src, size_t bytes, Stream stream) {
  if (bytes == 0) return;
  MGCA_CUDA(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost,
                            static_cast<cudaStream_t>(stream)));
}

}  // namespace mgca::comm::nccl
