// The world communicator (MPI for host tensors, NCCL or host staging for
// device tensors) and the single-process communicator.
#include <fmt/ranges.h>
#include "mgca/comm/communicator.h"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "device_backend.h"
#include "flight_recorder.h"
#include "mgca/build_config.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"
#include "mpi_runtime.h"

namespace mgca::comm {
namespace {

// ---- dtype and reduction mapping ------------------------------------------

template <typename T>
void reduce_16bit(const void* in, void* inout, int len, ReduceOp op) {
  const auto* a = static_cast<const T*>(in);
  auto* b = static_cast<T*>(inout);
  for (int i = 0; i < len; ++i) {
    const float x = static_cast<float>(a[i]);
    const float y = static_cast<float>(b[i]);
    const float r = op == ReduceOp::Max ? std::max(x, y) : op == ReduceOp::Min ? std::min(x, y) : x + y;
    b[i] = static_cast<T>(r);
  }
}

template <typename T, ReduceOp kOp>
void reduce_16bit_entry(void* in, void* inout, int* len, MPI_Datatype*) {
  reduce_16bit<T>(in, inout, *len, kOp);
}

// Integer sums that wrap around as torch's do. OpenMPI 4.1's AVX reduction
// component saturates 8- and 16-bit integer sums on its vector path (large
// messages only), so those dtypes get user-defined sums.
template <typename T>
void wrapping_sum_entry(void* in, void* inout, int* len, MPI_Datatype*) {
  using U = std::make_unsigned_t<T>;
  const auto* a = static_cast<const T*>(in);
  auto* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = static_cast<T>(static_cast<U>(static_cast<U>(a[i]) + static_cast<U>(b[i])));
}

// MPI has no bfloat16/half: they travel as 16-bit words with user reductions
// that accumulate each pair in fp32 and round back (as NCCL does).
struct UserOps {
  MPI_Op bf16[3];
  MPI_Op f16[3];
  MPI_Op sum_int8, sum_uint8, sum_int16;
};

const UserOps& user_ops() {
  static const UserOps ops = [] {
    UserOps o{};
    MGCA_MPI(MPI_Op_create(&reduce_16bit_entry<c10::BFloat16, ReduceOp::Sum>, 1, &o.bf16[0]));
    MGCA_MPI(MPI_Op_create(&reduce_16bit_entry<c10::BFloat16, ReduceOp::Max>, 1, &o.bf16[1]));
    MGCA_MPI(MPI_Op_create(&reduce_16bit_entry<c10::BFloat16, ReduceOp::Min>, 1, &o.bf16[2]));
    MGCA_MPI(MPI_Op_create(&reduce_16bit_entry<c10::Half, ReduceOp::Sum>, 1, &o.f16[0]));
    MGCA_MPI(MPI_Op_create(&reduce_16bit_entry<c10::Half, ReduceOp::Max>, 1, &o.f16[1]));
    MGCA_MPI(MPI_Op_create(&reduce_16bit_entry<c10::Half, ReduceOp::Min>, 1, &o.f16[2]));
    MGCA_MPI(MPI_Op_create(&wrapping_sum_entry<int8_t>, 1, &o.sum_int8));
    MGCA_MPI(MPI_Op_create(&wrapping_sum_entry<uint8_t>, 1, &o.sum_uint8));
    MGCA_MPI(MPI_Op_create(&wrapping_sum_entry<int16_t>, 1, &o.sum_int16));
    return o;
  }();
  return ops;
}

MPI_Datatype mpi_type(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kInt16: return MPI_INT16_T;
    case torch::kInt8: return MPI_INT8_T;
    case torch::kUInt8: return MPI_UINT8_T;
    case torch::kBool: return MPI_C_BOOL;
    case torch::kBFloat16:
    case torch::kHalf: return MPI_UINT16_T;
    default: MGCA_FAIL("dtype {} is not supported by the communicator", c10::toString(type));
  }
}

// Avg is computed as Sum followed by a division.
MPI_Op mpi_op(torch::ScalarType type, ReduceOp op) {
  const int index = op == ReduceOp::Max ? 1 : op == ReduceOp::Min ? 2 : 0;
  if (type == torch::kBFloat16) return user_ops().bf16[index];
  if (type == torch::kHalf) return user_ops().f16[index];
  if (type == torch::kBool) return op == ReduceOp::Min ? MPI_LAND : MPI_LOR;
  if (index == 0 && type == torch::kInt8) return user_ops().sum_int8;
  if (index == 0 && type == torch::kUInt8) return user_ops().sum_uint8;
  if (index == 0 && type == torch::kInt16) return user_ops().sum_int16;
  return index == 1 ? MPI_MAX : index == 2 ? MPI_MIN : MPI_SUM;
}

std::string describe(const torch::Tensor& t) {
  return fmt::format("{}{} {}", t.is_cuda() ? "cuda " : "", c10::toString(t.scalar_type()),
                     c10::str(t.sizes()));
}

// What the watchdog prints about a tensor collective, formatted only if it fires.
struct TensorCall {
  enum Kind { kPlain, kOp, kRoot };
  const torch::Tensor* tensor;
  Kind kind;
  int value;  // the ReduceOp or the root
  bool async;
};

std::string describe_call(const void* context) {
  const auto& call = *static_cast<const TensorCall*>(context);
  std::string text = describe(*call.tensor);
  if (call.kind == TensorCall::kOp) text += fmt::format(" {}", reduce_op_name(static_cast<ReduceOp>(call.value)));
  if (call.kind == TensorCall::kRoot) text += fmt::format(" from rank {}", call.value);
  if (call.async) text += " (async)";
  return text;
}

// What the flight recorder keeps about a tensor collective (no formatting).
detail::CollectiveRecord tensor_record(const char* op, const torch::Tensor& t, const char* reduce = "",
                                       int root = -1) {
  detail::CollectiveRecord r;
  r.op = op;
  r.dtype = c10::toString(t.scalar_type());
  r.reduce = reduce;
  r.root = root;
  r.device = t.is_cuda();
  r.ndim = static_cast<int>(t.dim());
  for (int d = 0; d < r.ndim && d < static_cast<int>(r.dims.size()); ++d) r.dims[static_cast<size_t>(d)] = t.size(d);
  r.bytes = t.numel() * static_cast<int64_t>(t.element_size());
  return r;
}

detail::CollectiveRecord host_record(const char* op, int64_t bytes, const char* reduce = "", int root = -1) {
  detail::CollectiveRecord r;
  r.op = op;
  r.reduce = reduce;
  r.root = root;
  r.bytes = bytes;
  return r;
}

void check_defined(const torch::Tensor& tensor, const char* what) {
  MGCA_CHECK(tensor.defined(), "{}: undefined tensor", what);
  MGCA_CHECK(tensor.device().is_cpu() || tensor.device().is_cuda(),
             "{}: tensors must be on the CPU or a CUDA device, got {}", what, tensor.device().str());
}

// Checked before anything moves, so a bad call fails on every rank alike.
void check_reduction(const torch::Tensor& tensor, ReduceOp op, const char* what) {
  mpi_type(tensor.scalar_type());  // fails on unsupported dtypes
  MGCA_CHECK(op != ReduceOp::Avg || tensor.is_floating_point(),
             "{}: Avg needs a floating-point tensor, got {} (use Sum and divide)", what, describe(tensor));
}

// The number of elements per message so that one message stays below
// `max_bytes` (and below INT_MAX elements, the MPI count limit).
int64_t chunk_elements(int64_t element_size, int64_t max_bytes) {
  const int64_t by_bytes = std::max<int64_t>(1, max_bytes / element_size);
  return std::min<int64_t>(by_bytes, INT_MAX);
}

// ---- asynchronous collectives: one worker thread per communicator ---------

class AsyncWork final : public Work {
 public:
  void wait() override {
    std::unique_lock<std::mutex> lock(mutex_);
    done_signal_.wait(lock, [&] { return done_; });
    if (error_) std::rethrow_exception(error_);
    if (finish_) {
      // Runs on the waiting thread, so device work lands on its current stream.
      auto finish = std::move(finish_);
      finish_ = nullptr;
      finish();
    }
  }
  bool test() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (done_ && error_) std::rethrow_exception(error_);
    if (!done_) return false;
    return device_done_ ? device_done_->query() : true;
  }
  // `finish` runs once, in the first wait(): for device tensors it orders the
  // waiting thread's stream after the collective (`device_done` is its
  // completion event) or copies a staged host result back.
  void complete(std::exception_ptr error, std::shared_ptr<nccl::Event> device_done = nullptr,
                std::function<void()> finish = nullptr) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
      error_ = std::move(error);
      device_done_ = std::move(device_done);
      finish_ = std::move(finish);
    }
    done_signal_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_signal_;
  bool done_ = false;
  std::exception_ptr error_;
  std::shared_ptr<nccl::Event> device_done_;
  std::function<void()> finish_;
};

class DoneWork final : public Work {
 public:
  void wait() override {}
  bool test() override { return true; }
};

// ---- the world communicator -------------------------------------------------

class WorldCommunicator final : public Communicator {
 public:
  explicit WorldCommunicator(const CommOptions& options) : options_(options) {
    MGCA_CHECK(is_initialized(), "Communicator::world() needs comm::init() first");
    MGCA_CHECK(options_.timeout_seconds > 0, "comm timeout must be positive, got {} s",
               options_.timeout_seconds);
    MGCA_CHECK(options_.max_message_bytes >= 16, "comm max_message_bytes must be at least 16, got {}",
               options_.max_message_bytes);
    MGCA_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
    // A second MPI communicator keeps the worker thread's host collectives
    // apart from the calling thread's: MPI orders collectives per communicator.
    MGCA_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &async_comm_));
    MGCA_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MGCA_MPI(MPI_Comm_set_errhandler(async_comm_, MPI_ERRORS_RETURN));
    MGCA_MPI(MPI_Comm_rank(comm_, &rank_));
    MGCA_MPI(MPI_Comm_size(comm_, &size_));
    channel_ = detail::new_channel();
    async_channel_ = detail::new_channel();
    try {
      if (options_.backend != Backend::Mpi) open_device_backend();
    } catch (...) {
      MPI_Comm_free(&comm_);
      MPI_Comm_free(&async_comm_);
      throw;
    }
    worker_ = std::thread([this] { worker_loop(); });
  }

  ~WorldCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      stopping_ = true;
    }
    queue_signal_.notify_all();
    worker_.join();
    device_.reset();
    if (is_initialized()) {
      MPI_Comm_free(&comm_);
      MPI_Comm_free(&async_comm_);
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return detail::local_rank(); }
  int local_size() const override { return detail::local_size(); }
  const std::string& host() const override { return detail::host_name(); }
  const CommOptions& options() const override { return options_; }
  int device_index() const override { return device_ ? device_->device_index() : -1; }
  std::shared_ptr<Communicator> duplicate_for_host() override {
    CommOptions host = options_;
    host.backend = Backend::Mpi;
    return std::make_shared<WorldCommunicator>(host);
  }
  std::string describe() const override {
    return fmt::format("MPI (host), {} (device), {} ranks, backend {}",
                       device_ ? device_->describe() : "staged through host memory and MPI", size_,
                       backend_name(options_.backend));
  }

  // ---- collectives --------------------------------------------------------

  void all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    check_defined(tensor, "all_reduce");
    check_reduction(tensor, op, "all_reduce");
    const TensorCall call{&tensor, TensorCall::kOp, static_cast<int>(op), false};
    detail::CollectiveGuard guard("all_reduce", &describe_call, &call, options_.timeout_seconds);
    const detail::FlightScope flight(channel_, tensor_record("all_reduce", tensor, reduce_op_name(op)));
    validate(kAllReduce, static_cast<int>(op), &tensor, comm_);
    auto buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
    if (buffer.is_cuda() && device_) {
      if (buffer.numel() > 0) device_->all_reduce(buffer, op);
    } else if (buffer.is_cuda()) {
      auto host = buffer.cpu();
      host_all_reduce(host, op, comm_);
      buffer.copy_(host);
    } else {
      host_all_reduce(buffer, op, comm_);
    }
    if (!buffer.is_same(tensor)) tensor.copy_(buffer);
  }

  std::shared_ptr<Work> all_reduce_async(torch::Tensor tensor, ReduceOp op, bool validate_call) override {
    check_defined(tensor, "all_reduce_async");
    check_reduction(tensor, op, "all_reduce_async");
    MGCA_CHECK(tensor.is_contiguous(), "all_reduce_async needs a contiguous tensor, got {}",
               comm::describe(tensor));
    auto work = std::make_shared<AsyncWork>();
    if (tensor.is_cuda() && device_) {
      // NCCL: enqueued now, by the calling thread, on the one NCCL
      // communicator; the host does not wait (see "NCCL order" in communicator.h).
      const TensorCall call{&tensor, TensorCall::kOp, static_cast<int>(op), true};
      detail::CollectiveGuard guard("all_reduce", &describe_call, &call, options_.timeout_seconds);
      if (validate_call) validate(kAllReduce, static_cast<int>(op), &tensor, comm_);
      if (tensor.numel() == 0) return std::make_shared<DoneWork>();
      auto done = device_->start_all_reduce(tensor, op);
      work->complete(nullptr, done, [this, done] { device_->join(*done); });
      return work;
    }
    torch::Tensor staged;  // device tensor without NCCL: reduced through host memory
    if (tensor.is_cuda()) staged = tensor.cpu();  // on the calling thread: ordered after its stream's work
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      queue_.push_back([this, tensor, staged, op, work, validate_call]() mutable {
        try {
          const TensorCall call{&tensor, TensorCall::kOp, static_cast<int>(op), true};
          detail::CollectiveGuard guard("all_reduce", &describe_call, &call, options_.timeout_seconds);
          const detail::FlightScope flight(async_channel_, tensor_record("all_reduce", tensor, reduce_op_name(op)));
          if (validate_call) validate(kAllReduce, static_cast<int>(op), &tensor, async_comm_);
          if (staged.defined()) {
            host_all_reduce(staged, op, async_comm_);
            work->complete(nullptr, nullptr, [tensor, staged]() mutable { tensor.copy_(staged); });
          } else {
            host_all_reduce(tensor, op, async_comm_);
            work->complete(nullptr);
          }
        } catch (...) {
          work->complete(std::current_exception());
        }
      });
    }
    queue_signal_.notify_one();
    return work;
  }

  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    check_defined(tensor, "all_gather");
    auto input = tensor.dim() == 0 ? tensor.reshape({1}) : tensor;
    std::vector<int64_t> shape = input.sizes().vec();
    shape[0] *= size_;
    auto output = torch::empty(shape, input.options().memory_format(c10::MemoryFormat::Contiguous));
    gather_checked(output, input, "all_gather");
    return output;
  }

  void all_gather_into(torch::Tensor& output, const torch::Tensor& input) override {
    check_defined(input, "all_gather_into");
    check_defined(output, "all_gather_into");
    auto in = input.dim() == 0 ? input.reshape({1}) : input;
    std::vector<int64_t> shape = in.sizes().vec();
    shape[0] *= size_;
    MGCA_CHECK(output.sizes() == c10::IntArrayRef(shape) && output.scalar_type() == in.scalar_type() &&
                   output.device() == in.device() && output.is_contiguous(),
               "all_gather_into: output must be a contiguous {} {} on {}, got {}{}",
               c10::toString(in.scalar_type()), c10::str(c10::IntArrayRef(shape)), in.device().str(),
               comm::describe(output), output.is_contiguous() ? "" : " (non-contiguous)");
    gather_checked(output, in, "all_gather_into");
  }

  torch::Tensor reduce_scatter(const torch::Tensor& tensor, ReduceOp op) override {
    check_defined(tensor, "reduce_scatter");
    MGCA_CHECK(tensor.dim() >= 1 && tensor.size(0) % size_ == 0,
               "reduce_scatter needs dim 0 divisible by the world size {}, got {}", size_,
               comm::describe(tensor));
    std::vector<int64_t> shape = tensor.sizes().vec();
    shape[0] /= size_;
    auto output = torch::empty(shape, tensor.options().memory_format(c10::MemoryFormat::Contiguous));
    scatter_checked(output, tensor, op, "reduce_scatter");
    return output;
  }

  void reduce_scatter_into(torch::Tensor& output, const torch::Tensor& input, ReduceOp op) override {
    check_defined(input, "reduce_scatter_into");
    check_defined(output, "reduce_scatter_into");
    MGCA_CHECK(input.dim() >= 1 && input.size(0) % size_ == 0,
               "reduce_scatter_into needs dim 0 divisible by the world size {}, got {}", size_,
               comm::describe(input));
    std::vector<int64_t> shape = input.sizes().vec();
    shape[0] /= size_;
    MGCA_CHECK(output.sizes() == c10::IntArrayRef(shape) && output.scalar_type() == input.scalar_type() &&
                   output.device() == input.device() && output.is_contiguous(),
               "reduce_scatter_into: output must be a contiguous {} {} on {}, got {}{}",
               c10::toString(input.scalar_type()), c10::str(c10::IntArrayRef(shape)), input.device().str(),
               comm::describe(output), output.is_contiguous() ? "" : " (non-contiguous)");
    scatter_checked(output, input, op, "reduce_scatter_into");
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    check_defined(tensor, "broadcast");
    MGCA_CHECK(root >= 0 && root < size_, "broadcast root {} outside [0, {})", root, size_);
    mpi_type(tensor.scalar_type());
    const TensorCall call{&tensor, TensorCall::kRoot, root, false};
    detail::CollectiveGuard guard("broadcast", &describe_call, &call, options_.timeout_seconds);
    const detail::FlightScope flight(channel_, tensor_record("broadcast", tensor, "", root));
    validate(kBroadcast, root, &tensor, comm_);
    auto buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
    if (buffer.is_cuda() && device_) {
      if (buffer.numel() > 0) device_->broadcast(buffer, root);
    } else if (buffer.is_cuda()) {
      auto host = buffer.cpu();
      host_broadcast(host, root);
      buffer.copy_(host);
    } else {
      host_broadcast(buffer, root);
    }
    if (!buffer.is_same(tensor)) tensor.copy_(buffer);
  }

  void barrier() override {
    static const std::string detail;
    detail::CollectiveGuard guard("barrier", &detail, options_.timeout_seconds);
    const detail::FlightScope flight(channel_, host_record("barrier", 0));
    validate(kBarrier, 0, nullptr, comm_);
    MGCA_MPI(MPI_Barrier(comm_));
  }

  double all_reduce_scalar(double value, ReduceOp op) override {
    double result = 0;
    static const std::string detail = "of a double";
    detail::CollectiveGuard guard("all_reduce_scalar", &detail, options_.timeout_seconds);
    const detail::FlightScope flight(channel_, host_record("all_reduce_scalar", sizeof(double), reduce_op_name(op)));
    validate(kScalar, static_cast<int>(op), nullptr, comm_);
    MGCA_MPI(MPI_Allreduce(&value, &result, 1, MPI_DOUBLE, mpi_op(torch::kFloat64, op), comm_));
    return op == ReduceOp::Avg ? result / size_ : result;
  }

  bool any(bool flag) override { return all_reduce_scalar(flag ? 1.0 : 0.0, ReduceOp::Max) > 0.0; }

  std::string broadcast_string(const std::string& value, int root) override {
    MGCA_CHECK(root >= 0 && root < size_, "broadcast_string root {} outside [0, {})", root, size_);
    static const std::string detail = "of a string";
    detail::CollectiveGuard guard("broadcast_string", &detail, options_.timeout_seconds);
    // The length is known on the root only; records must read alike on every rank.
    const detail::FlightScope flight(channel_, host_record("broadcast_string", -1, "", root));
    validate(kString, root, nullptr, comm_);
    int64_t length = static_cast<int64_t>(value.size());
    MGCA_MPI(MPI_Bcast(&length, 1, MPI_INT64_T, root, comm_));
    std::string result = rank_ == root ? value : std::string(static_cast<size_t>(length), '\0');
    const int64_t chunk = chunk_elements(1, options_.max_message_bytes);
    for (int64_t offset = 0; offset < length; offset += chunk) {
      const int count = static_cast<int>(std::min(chunk, length - offset));
      MGCA_MPI(MPI_Bcast(result.data() + offset, count, MPI_CHAR, root, comm_));
    }
    return result;
  }

 private:
  enum Collective : int64_t {
    kAllReduce = 1, kAllGather, kReduceScatter, kBroadcast, kBarrier, kScalar, kString
  };
  static constexpr int kMaxDims = 8;
  static constexpr int kMeta = 5 + kMaxDims;  // collective, op/root, dtype, device type, ndim, dims

  // ---- device backend -------------------------------------------------------

  // Collective: every rank learns whether every rank can use NCCL, so all of
  // them create the NCCL communicators or none does.
  void open_device_backend() {
    std::string why;
    const bool usable = detail::device_backend_usable(&why);
    int all_usable = usable ? 1 : 0;
    MGCA_MPI(MPI_Allreduce(MPI_IN_PLACE, &all_usable, 1, MPI_INT, MPI_MIN, comm_));
    if (!all_usable) {
      if (options_.backend == Backend::Nccl || usable) {
        // Name every rank that cannot, with its reason.
        constexpr int kReason = 160;
        std::array<char, kReason> mine{};
        std::snprintf(mine.data(), mine.size(), "%s", usable ? "" : why.c_str());
        std::vector<char> all(static_cast<size_t>(kReason) * size_);
        MGCA_MPI(MPI_Allgather(mine.data(), kReason, MPI_CHAR, all.data(), kReason, MPI_CHAR, comm_));
        std::string ranks;
        for (int r = 0; r < size_; ++r) {
          const char* reason = &all[static_cast<size_t>(r) * kReason];
          if (reason[0] != '\0') ranks += fmt::format("{}rank {}: {}", ranks.empty() ? "" : "; ", r, reason);
        }
        MGCA_CHECK(options_.backend != Backend::Nccl,
                   "backend nccl was requested but NCCL cannot be used on every rank ({})", ranks);
        log::warn("NCCL is usable on some ranks only ({}); device tensors are staged through MPI", ranks);
      }
      return;
    }
    std::string count_why;
    const int count = nccl::device_count(&count_why);
    const int device = options_.device >= 0 ? options_.device : local_rank() % std::max(count, 1);
    MGCA_CHECK(device < count, "comm device {} is not visible on host {} ({} CUDA devices)", device, host(),
               count);
    check_one_gpu_per_rank(device);
    device_ = detail::make_nccl_backend(comm_, device, options_.timeout_seconds, "nccl");
  }

  // Collective: fails on every rank alike when two ranks of one host would
  // drive the same physical GPU (a host running more ranks than it has GPUs;
  // NCCL cannot put two ranks of a communicator on one device). GPUs are
  // compared by UUID, so a rank that sees only its own GPU as device 0
  // (SLURM's --gpus-per-task=1) is told apart from its neighbours.
  void check_one_gpu_per_rank(int device) {
    constexpr int kField = 128;
    std::array<char, 2 * kField> mine{};
    std::snprintf(mine.data(), kField, "%s", host().c_str());
    std::snprintf(mine.data() + kField, kField, "%s", nccl::device_uuid(device).c_str());
    std::vector<char> all(mine.size() * static_cast<size_t>(size_));
    MGCA_MPI(MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_CHAR, all.data(),
                           static_cast<int>(mine.size()), MPI_CHAR, comm_));
    std::map<std::pair<std::string, std::string>, std::vector<int>> ranks_of_gpu;  // (host, uuid) → ranks
    for (int r = 0; r < size_; ++r) {
      const char* entry = &all[static_cast<size_t>(r) * mine.size()];
      ranks_of_gpu[{std::string(entry), std::string(entry + kField)}].push_back(r);
    }
    std::string shared;
    for (const auto& [gpu, ranks] : ranks_of_gpu) {
      if (ranks.size() < 2) continue;
      shared += fmt::format("{}host {}: ranks {} on GPU {}", shared.empty() ? "" : "; ", gpu.first,
                            fmt::join(ranks, ", "), gpu.second);
    }
    MGCA_CHECK(shared.empty(),
               "more ranks than GPUs ({}): NCCL needs one GPU per rank; start at most as many ranks on a host "
               "as it has GPUs, or set comm.backend = \"mpi\" or runtime.device = \"cpu\"",
               shared);
  }

  // ---- host paths -------------------------------------------------------------

  // In place on a contiguous host tensor, split into messages of at most
  // max_message_bytes.
  void host_all_reduce(torch::Tensor& buffer, ReduceOp op, MPI_Comm comm) const {
    const int64_t n = buffer.numel();
    if (n > 0) {
      const auto type = buffer.scalar_type();
      const int64_t esize = static_cast<int64_t>(buffer.element_size());
      const int64_t chunk = chunk_elements(esize, options_.max_message_bytes);
      auto* base = static_cast<char*>(buffer.data_ptr());
      for (int64_t offset = 0; offset < n; offset += chunk) {
        const int count = static_cast<int>(std::min(chunk, n - offset));
        MGCA_MPI(MPI_Allreduce(MPI_IN_PLACE, base + offset * esize, count, mpi_type(type), mpi_op(type, op),
                               comm));
      }
    }
    if (op == ReduceOp::Avg) buffer.div_(size_);
  }

  void host_broadcast(torch::Tensor& buffer, int root) const {
    const int64_t n = buffer.numel();
    const int64_t esize = static_cast<int64_t>(buffer.element_size());
    const int64_t chunk = chunk_elements(esize, options_.max_message_bytes);
    auto* base = static_cast<char*>(buffer.data_ptr());
    for (int64_t offset = 0; offset < n; offset += chunk) {
      const int count = static_cast<int>(std::min(chunk, n - offset));
      MGCA_MPI(MPI_Bcast(base + offset * esize, count, mpi_type(buffer.scalar_type()), root, comm_));
    }
  }

  // output [W * n] contiguous, input [n] contiguous, both on the host.
  void host_all_gather(torch::Tensor& output, const torch::Tensor& input) const {
    const int64_t n = input.numel();
    if (n == 0) return;
    const MPI_Datatype type = mpi_type(input.scalar_type());
    const int64_t esize = static_cast<int64_t>(input.element_size());
    const int64_t chunk = chunk_elements(esize, options_.max_message_bytes);
    const auto* in = static_cast<const char*>(input.data_ptr());
    auto* out = static_cast<char*>(output.data_ptr());
    if (n <= chunk) {
      MGCA_MPI(MPI_Allgather(in, static_cast<int>(n), type, out, static_cast<int>(n), type, comm_));
      return;
    }
    // Chunk k of every rank lands at out + r*n + k: receive one "block" of
    // `count` elements per rank whose extent is a whole rank's row (n elements).
    for (int64_t offset = 0; offset < n; offset += chunk) {
      const int count = static_cast<int>(std::min(chunk, n - offset));
      MPI_Datatype block = MPI_DATATYPE_NULL, row = MPI_DATATYPE_NULL;
      MGCA_MPI(MPI_Type_contiguous(count, type, &block));
      MGCA_MPI(MPI_Type_create_resized(block, 0, static_cast<MPI_Aint>(n * esize), &row));
      MGCA_MPI(MPI_Type_commit(&row));
      const int code = MPI_Allgather(in + offset * esize, count, type, out + offset * esize, 1, row, comm_);
      MPI_Type_free(&row);
      MPI_Type_free(&block);
      MGCA_MPI(code);
    }
  }

  // input [W * n] contiguous, output [n] contiguous, both on the host.
  void host_reduce_scatter(torch::Tensor& output, const torch::Tensor& input, ReduceOp op) const {
    const int64_t n = output.numel();
    if (n > 0) {
      const auto type = input.scalar_type();
      const int64_t esize = static_cast<int64_t>(input.element_size());
      const int64_t chunk = chunk_elements(esize, options_.max_message_bytes);
      if (n <= chunk) {
        MGCA_MPI(MPI_Reduce_scatter_block(input.data_ptr(), output.data_ptr(), static_cast<int>(n),
                                          mpi_type(type), mpi_op(type, op), comm_));
      } else {
        // Pack column block k of every rank's row into [W, count] first:
        // predefined MPI reductions need contiguous basic types.
        auto rows = input.reshape({size_, n});
        auto flat_out = output.view({n});
        for (int64_t offset = 0; offset < n; offset += chunk) {
          const int64_t count = std::min(chunk, n - offset);
          auto pack = rows.narrow(1, offset, count).contiguous();
          MGCA_MPI(MPI_Reduce_scatter_block(pack.data_ptr(), flat_out.narrow(0, offset, count).data_ptr(),
                                            static_cast<int>(count), mpi_type(type), mpi_op(type, op),
                                            comm_));
        }
      }
    }
    if (op == ReduceOp::Avg) output.div_(size_);
  }

  void gather_checked(torch::Tensor& output, const torch::Tensor& input, const char* what) {
    mpi_type(input.scalar_type());
    const TensorCall call{&input, TensorCall::kPlain, 0, false};
    detail::CollectiveGuard guard(what, &describe_call, &call, options_.timeout_seconds);
    const detail::FlightScope flight(channel_, tensor_record(what, input));
    validate(kAllGather, 0, &input, comm_);
    auto in = input.contiguous();
    if (in.is_cuda() && device_) {
      if (in.numel() > 0) device_->all_gather(output, in);
    } else if (in.is_cuda()) {
      auto host_out = torch::empty(output.sizes(), output.options().device(torch::kCPU));
      host_all_gather(host_out, in.cpu());
      output.copy_(host_out);
    } else {
      host_all_gather(output, in);
    }
  }

  void scatter_checked(torch::Tensor& output, const torch::Tensor& input, ReduceOp op, const char* what) {
    check_reduction(input, op, what);
    const TensorCall call{&input, TensorCall::kOp, static_cast<int>(op), false};
    detail::CollectiveGuard guard(what, &describe_call, &call, options_.timeout_seconds);
    const detail::FlightScope flight(channel_, tensor_record(what, input, reduce_op_name(op)));
    validate(kReduceScatter, static_cast<int>(op), &input, comm_);
    auto in = input.contiguous();
    if (in.is_cuda() && device_) {
      if (output.numel() > 0) device_->reduce_scatter(output, in, op);
    } else if (in.is_cuda()) {
      auto host_out = torch::empty(output.sizes(), output.options().device(torch::kCPU));
      host_reduce_scatter(host_out, in.cpu(), op);
      output.copy_(host_out);
    } else {
      host_reduce_scatter(output, in, op);
    }
  }

  // ---- cross-rank check -------------------------------------------------------

  // Every rank contributes (collective, op or root, dtype, device type,
  // shape); one all-reduce of [meta, -meta] with MIN yields min and max of
  // each field. If any field differs, gather all ranks' metadata and fail on
  // every rank with the same message naming each rank's values.
  void validate(Collective collective, int op_or_root, const torch::Tensor* tensor, MPI_Comm comm) const {
    if (!options_.validate || size_ == 1) return;
    std::array<int64_t, kMeta> meta{};
    meta.fill(-1);
    meta[0] = collective;
    meta[1] = op_or_root;
    if (tensor != nullptr) {
      MGCA_CHECK(tensor->dim() <= kMaxDims, "the cross-rank check supports at most {} dims, got {}",
                 kMaxDims, comm::describe(*tensor));
      meta[2] = static_cast<int64_t>(tensor->scalar_type());
      meta[3] = tensor->is_cuda() ? 1 : 0;
      meta[4] = tensor->dim();
      for (int64_t d = 0; d < tensor->dim(); ++d) meta[5 + d] = tensor->size(d);
    }
    std::array<int64_t, 2 * kMeta> both{};
    for (int i = 0; i < kMeta; ++i) {
      both[i] = meta[i];
      both[kMeta + i] = -meta[i];
    }
    MGCA_MPI(MPI_Allreduce(MPI_IN_PLACE, both.data(), 2 * kMeta, MPI_INT64_T, MPI_MIN, comm));
    bool agree = true;
    for (int i = 0; i < kMeta; ++i) agree = agree && (both[i] == -both[kMeta + i]);
    if (agree) return;
    std::vector<int64_t> all(static_cast<size_t>(kMeta) * size_);
    MGCA_MPI(MPI_Allgather(meta.data(), kMeta, MPI_INT64_T, all.data(), kMeta, MPI_INT64_T, comm));
    static const char* names[] = {"?",       "all_reduce", "all_gather",        "reduce_scatter",
                                  "broadcast", "barrier",  "all_reduce_scalar", "broadcast_string"};
    std::string ranks;
    for (int r = 0; r < size_; ++r) {
      const int64_t* m = &all[static_cast<size_t>(r) * kMeta];
      const int64_t kind = std::clamp<int64_t>(m[0], 0, 7);
      ranks += fmt::format("{}rank {}: {}", r ? "; " : "", r, names[kind]);
      if (m[4] >= 0) {
        std::vector<int64_t> dims(m + 5, m + 5 + std::min<int64_t>(m[4], kMaxDims));
        ranks += fmt::format(" {}{} [{}]", m[3] == 1 ? "cuda " : "",
                             c10::toString(static_cast<torch::ScalarType>(m[2])), fmt::join(dims, ", "));
      }
      if (kind == kBroadcast || kind == kString) {
        ranks += fmt::format(" (root {})", m[1]);
      } else if (kind == kAllReduce || kind == kReduceScatter || kind == kScalar) {
        ranks += fmt::format(" ({})", reduce_op_name(static_cast<ReduceOp>(std::clamp<int64_t>(m[1], 0, 3))));
      }
    }
    MGCA_FAIL(
        "ranks disagree on a collective (every rank must call the same collective with the same "
        "dtype, device and shape): {}",
        ranks);
  }

  void worker_loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(queue_mutex_);
        queue_signal_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  CommOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm async_comm_ = MPI_COMM_NULL;
  int channel_ = -1, async_channel_ = -1;  // flight recorder channels of comm_ and async_comm_
  int rank_ = 0;
  int size_ = 1;
  // The one NCCL communicator of this rank (with comm_): every device
  // collective, blocking or asynchronous, in call order.
  std::unique_ptr<detail::DeviceBackend> device_;

  std::thread worker_;
  std::mutex queue_mutex_;
  std::condition_variable queue_signal_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
};

// ---- the single-process communicator ---------------------------------------

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator() {
    std::array<char, 256> name{};
    gethostname(name.data(), name.size() - 1);
    host_ = name.data();
  }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  const std::string& host() const override { return host_; }
  const CommOptions& options() const override { return options_; }
  int device_index() const override { return -1; }
  std::shared_ptr<Communicator> duplicate_for_host() override { return single(); }
  std::string describe() const override { return "single process (no communication)"; }
  void all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    check_defined(tensor, "all_reduce");
    check_reduction(tensor, op, "all_reduce");
  }
  std::shared_ptr<Work> all_reduce_async(torch::Tensor tensor, ReduceOp op, bool) override {
    check_defined(tensor, "all_reduce_async");
    check_reduction(tensor, op, "all_reduce_async");
    return std::make_shared<DoneWork>();
  }
  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    check_defined(tensor, "all_gather");
    return tensor.dim() == 0 ? tensor.reshape({1}).clone() : tensor.clone(c10::MemoryFormat::Contiguous);
  }
  void all_gather_into(torch::Tensor& output, const torch::Tensor& input) override {
    check_defined(input, "all_gather_into");
    auto in = input.dim() == 0 ? input.reshape({1}) : input;
    MGCA_CHECK(output.defined() && output.sizes() == in.sizes() && output.scalar_type() == in.scalar_type(),
               "all_gather_into: output must be {}, got {}", comm::describe(in),
               output.defined() ? comm::describe(output) : "undefined");
    output.copy_(in);
  }
  torch::Tensor reduce_scatter(const torch::Tensor& tensor, ReduceOp op) override {
    check_defined(tensor, "reduce_scatter");
    check_reduction(tensor, op, "reduce_scatter");
    MGCA_CHECK(tensor.dim() >= 1, "reduce_scatter needs a tensor with a dim 0, got {}", comm::describe(tensor));
    return tensor.clone(c10::MemoryFormat::Contiguous);
  }
  void reduce_scatter_into(torch::Tensor& output, const torch::Tensor& input, ReduceOp op) override {
    check_defined(input, "reduce_scatter_into");
    check_reduction(input, op, "reduce_scatter_into");
    MGCA_CHECK(output.defined() && output.sizes() == input.sizes() && output.scalar_type() == input.scalar_type(),
               "reduce_scatter_into: output must be {}, got {}", comm::describe(input),
               output.defined() ? comm::describe(output) : "undefined");
    output.copy_(input);
  }
  void broadcast(torch::Tensor& tensor, int root) override {
    check_defined(tensor, "broadcast");
    MGCA_CHECK(root == 0, "broadcast root {} outside [0, 1)", root);
  }
  void barrier() override {}
  double all_reduce_scalar(double value, ReduceOp) override { return value; }
  bool any(bool flag) override { return flag; }
  std::string broadcast_string(const std::string& value, int root) override {
    MGCA_CHECK(root == 0, "broadcast_string root {} outside [0, 1)", root);
    return value;
  }

 private:
  std::string host_;
  CommOptions options_;
};

}  // namespace

#if !MGCA_TORCH_HAS_CUDA
namespace detail {
bool device_backend_usable(std::string* why) {
  if (why) *why = "this build's libtorch has no CUDA";
  return false;
}
std::unique_ptr<DeviceBackend> make_nccl_backend(MPI_Comm, int, double, const std::string&) {
  MGCA_FAIL("NCCL on tensors needs a libtorch with CUDA; this build's libtorch is CPU-only");
}
}  // namespace detail
#endif

std::shared_ptr<Communicator> Communicator::world(const CommOptions& options) {
  return std::make_shared<WorldCommunicator>(options);
}

std::shared_ptr<Communicator> Communicator::single() {
  static const auto instance = std::make_shared<LocalCommunicator>();
  return instance;
}

}  // namespace mgca::comm
