// MPI communicator for host tensors, and the single-process communicator.
#include "mgca/comm/communicator.h"

#include <torch/torch.h>
#include <unistd.h>

#include <array>
#include <climits>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "mgca/util/error.h"
#include "mpi_runtime.h"

namespace mgca::comm {
namespace {

// ---- dtype and reduction mapping ------------------------------------------

template <typename T>
void reduce_16bit(void* in, void* inout, int* len, ReduceOp op) {
  auto* a = static_cast<T*>(in);
  auto* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = static_cast<float>(a[i]);
    const float y = static_cast<float>(b[i]);
    const float r = op == ReduceOp::Max ? std::max(x, y) : op == ReduceOp::Min ? std::min(x, y) : x + y;
    b[i] = static_cast<T>(r);
  }
}

template <typename T, ReduceOp kOp>
void reduce_16bit_entry(void* in, void* inout, int* len, MPI_Datatype*) {
  reduce_16bit<T>(in, inout, len, kOp);
}

// MPI has no bfloat16/half: they travel as 16-bit words with user reductions
// that accumulate each pair in fp32 and round back (as NCCL does).
struct SixteenBitOps {
  MPI_Op bf16[3];
  MPI_Op f16[3];
};

const SixteenBitOps& sixteen_bit_ops() {
  static const SixteenBitOps ops = [] {
    SixteenBitOps o{};
    MPI_Op_create(&reduce_16bit_entry<c10::BFloat16, ReduceOp::Sum>, 1, &o.bf16[0]);
    MPI_Op_create(&reduce_16bit_entry<c10::BFloat16, ReduceOp::Max>, 1, &o.bf16[1]);
    MPI_Op_create(&reduce_16bit_entry<c10::BFloat16, ReduceOp::Min>, 1, &o.bf16[2]);
    MPI_Op_create(&reduce_16bit_entry<c10::Half, ReduceOp::Sum>, 1, &o.f16[0]);
    MPI_Op_create(&reduce_16bit_entry<c10::Half, ReduceOp::Max>, 1, &o.f16[1]);
    MPI_Op_create(&reduce_16bit_entry<c10::Half, ReduceOp::Min>, 1, &o.f16[2]);
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
    default: MGCA_FAIL("dtype {} is not supported by the MPI backend", c10::toString(type));
  }
}

const char* op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
  }
  return "?";
}

// Avg is computed as Sum followed by a division.
MPI_Op mpi_op(torch::ScalarType type, ReduceOp op) {
  const int index = op == ReduceOp::Max ? 1 : op == ReduceOp::Min ? 2 : 0;
  if (type == torch::kBFloat16) return sixteen_bit_ops().bf16[index];
  if (type == torch::kHalf) return sixteen_bit_ops().f16[index];
  if (type == torch::kBool) return op == ReduceOp::Min ? MPI_LAND : MPI_LOR;
  return index == 1 ? MPI_MAX : index == 2 ? MPI_MIN : MPI_SUM;
}

int checked_count(int64_t numel, const char* what) {
  MGCA_CHECK(numel <= INT_MAX, "{}: {} elements exceed the MPI count limit ({})", what, numel, INT_MAX);
  return static_cast<int>(numel);
}

std::string describe(const torch::Tensor& t) {
  return fmt::format("{} {}", c10::toString(t.scalar_type()), c10::str(t.sizes()));
}

// ---- asynchronous collectives: one worker thread per communicator ---------

class AsyncWork final : public Work {
 public:
  void wait() override {
    std::unique_lock<std::mutex> lock(mutex_);
    done_signal_.wait(lock, [&] { return done_; });
    if (error_) std::rethrow_exception(error_);
  }
  bool test() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (done_ && error_) std::rethrow_exception(error_);
    return done_;
  }
  void complete(std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
      error_ = std::move(error);
    }
    done_signal_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_signal_;
  bool done_ = false;
  std::exception_ptr error_;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(const CommOptions& options) : options_(options) {
    MGCA_CHECK(is_initialized(), "Communicator::world() needs comm::init() first");
    MGCA_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
    // A second communicator keeps the worker thread's collectives apart from
    // the calling thread's: MPI orders collectives per communicator.
    MGCA_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &async_comm_));
    MGCA_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MGCA_MPI(MPI_Comm_set_errhandler(async_comm_, MPI_ERRORS_RETURN));
    MGCA_MPI(MPI_Comm_rank(comm_, &rank_));
    MGCA_MPI(MPI_Comm_size(comm_, &size_));
    worker_ = std::thread([this] { worker_loop(); });
  }

  ~MpiCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      stopping_ = true;
    }
    queue_signal_.notify_all();
    worker_.join();
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

  void all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    check_host(tensor, "all_reduce");
    validate(kAllReduce, tensor, static_cast<int>(op), comm_);
    auto buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
    run_all_reduce(buffer, op, comm_);
    if (!buffer.is_same(tensor)) tensor.copy_(buffer);
  }

  std::shared_ptr<Work> all_reduce_async(torch::Tensor tensor, ReduceOp op) override {
    check_host(tensor, "all_reduce_async");
    MGCA_CHECK(tensor.is_contiguous(), "all_reduce_async needs a contiguous tensor, got {}",
               describe(tensor));
    auto work = std::make_shared<AsyncWork>();
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      queue_.push_back([this, tensor, op, work]() mutable {
        std::exception_ptr error;
        try {
          validate(kAllReduce, tensor, static_cast<int>(op), async_comm_);
          run_all_reduce(tensor, op, async_comm_);
        } catch (...) {
          error = std::current_exception();
        }
        work->complete(error);
      });
    }
    queue_signal_.notify_one();
    return work;
  }

  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    check_host(tensor, "all_gather");
    validate(kAllGather, tensor, 0, comm_);
    auto input = tensor.dim() == 0 ? tensor.reshape({1}) : tensor;
    input = input.contiguous();
    std::vector<int64_t> shape = input.sizes().vec();
    shape[0] *= size_;
    auto output = torch::empty(shape, input.options());
    if (input.numel() > 0) {
      const int count = checked_count(input.numel(), "all_gather");
      const std::string detail = describe(input);
      detail::CollectiveGuard guard("all_gather", &detail, options_.timeout_seconds);
      MGCA_MPI(MPI_Allgather(input.data_ptr(), count, mpi_type(input.scalar_type()), output.data_ptr(),
                             count, mpi_type(input.scalar_type()), comm_));
    }
    return output;
  }

  torch::Tensor reduce_scatter(const torch::Tensor& tensor, ReduceOp op) override {
    check_host(tensor, "reduce_scatter");
    MGCA_CHECK(tensor.dim() >= 1 && tensor.size(0) % size_ == 0,
               "reduce_scatter needs dim 0 divisible by the world size {}, got {}", size_,
               describe(tensor));
    validate(kReduceScatter, tensor, static_cast<int>(op), comm_);
    auto input = tensor.contiguous();
    std::vector<int64_t> shape = input.sizes().vec();
    shape[0] /= size_;
    auto output = torch::empty(shape, input.options());
    if (output.numel() > 0) {
      const int count = checked_count(output.numel(), "reduce_scatter");
      const std::string detail = describe(input);
      detail::CollectiveGuard guard("reduce_scatter", &detail, options_.timeout_seconds);
      MGCA_MPI(MPI_Reduce_scatter_block(input.data_ptr(), output.data_ptr(), count,
                                        mpi_type(input.scalar_type()),
                                        mpi_op(input.scalar_type(), op), comm_));
    }
    finish_average(output, op);
    return output;
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    check_host(tensor, "broadcast");
    MGCA_CHECK(root >= 0 && root < size_, "broadcast root {} outside [0, {})", root, size_);
    validate(kBroadcast, tensor, root, comm_);
    auto buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
    if (buffer.numel() > 0) {
      const int count = checked_count(buffer.numel(), "broadcast");
      const std::string detail = describe(buffer);
      detail::CollectiveGuard guard("broadcast", &detail, options_.timeout_seconds);
      MGCA_MPI(MPI_Bcast(buffer.data_ptr(), count, mpi_type(buffer.scalar_type()), root, comm_));
    }
    if (!buffer.is_same(tensor)) tensor.copy_(buffer);
  }

  void barrier() override {
    static const std::string detail;
    detail::CollectiveGuard guard("barrier", &detail, options_.timeout_seconds);
    MGCA_MPI(MPI_Barrier(comm_));
  }

  double all_reduce_scalar(double value, ReduceOp op) override {
    double result = 0;
    {
      static const std::string detail = "double scalar";
      detail::CollectiveGuard guard("all_reduce_scalar", &detail, options_.timeout_seconds);
      MGCA_MPI(MPI_Allreduce(&value, &result, 1, MPI_DOUBLE, mpi_op(torch::kFloat64, op), comm_));
    }
    return op == ReduceOp::Avg ? result / size_ : result;
  }

  bool any(bool flag) override { return all_reduce_scalar(flag ? 1.0 : 0.0, ReduceOp::Max) > 0.0; }

  std::string broadcast_string(const std::string& value, int root) override {
    int64_t length = static_cast<int64_t>(value.size());
    static const std::string detail = "string";
    detail::CollectiveGuard guard("broadcast_string", &detail, options_.timeout_seconds);
    MGCA_MPI(MPI_Bcast(&length, 1, MPI_INT64_T, root, comm_));
    std::string result = rank_ == root ? value : std::string(static_cast<size_t>(length), '\0');
    if (length > 0) {
      MGCA_MPI(MPI_Bcast(result.data(), checked_count(length, "broadcast_string"), MPI_CHAR, root, comm_));
    }
    return result;
  }

 private:
  enum Collective : int64_t { kAllReduce = 1, kAllGather = 2, kReduceScatter = 3, kBroadcast = 4 };
  static constexpr int kMaxDims = 8;
  static constexpr int kMeta = 4 + kMaxDims;  // collective, op/root, dtype, ndim, dims

  static void check_host(const torch::Tensor& tensor, const char* what) {
    MGCA_CHECK(tensor.defined(), "{}: undefined tensor", what);
    MGCA_CHECK(tensor.device().is_cpu(),
               "{}: the MPI backend takes host tensors, got a {} tensor (use the NCCL backend)", what,
               tensor.device().str());
  }

  void finish_average(torch::Tensor& tensor, ReduceOp op) const {
    if (op != ReduceOp::Avg) return;
    MGCA_CHECK(tensor.is_floating_point(), "Avg reduction needs a floating-point tensor, got {}",
               describe(tensor));
    tensor.div_(size_);
  }

  void run_all_reduce(torch::Tensor& buffer, ReduceOp op, MPI_Comm comm) const {
    if (buffer.numel() > 0) {
      const int count = checked_count(buffer.numel(), "all_reduce");
      const std::string detail = fmt::format("{} {}", describe(buffer), op_name(op));
      detail::CollectiveGuard guard("all_reduce", &detail, options_.timeout_seconds);
      MGCA_MPI(MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr(), count, mpi_type(buffer.scalar_type()),
                             mpi_op(buffer.scalar_type(), op), comm));
    }
    finish_average(buffer, op);
  }

  // Every rank contributes (collective, op or root, dtype, shape); one
  // all-reduce of [meta, -meta] with MIN yields min and max of each field.
  // If any field differs, gather all ranks' metadata and fail on every rank
  // with the same message naming each rank's values.
  void validate(Collective collective, const torch::Tensor& tensor, int op_or_root, MPI_Comm comm) const {
    if (!options_.validate || size_ == 1) return;
    MGCA_CHECK(tensor.dim() <= kMaxDims, "tensors of more than {} dims are not supported", kMaxDims);
    std::array<int64_t, kMeta> meta{};
    meta.fill(-1);
    meta[0] = collective;
    meta[1] = op_or_root;
    meta[2] = static_cast<int64_t>(tensor.scalar_type());
    meta[3] = tensor.dim();
    for (int64_t d = 0; d < tensor.dim(); ++d) {
      // all_gather may differ only in nothing; every collective here needs equal shapes.
      meta[4 + d] = tensor.size(d);
    }
    std::array<int64_t, 2 * kMeta> both{};
    for (int i = 0; i < kMeta; ++i) {
      both[i] = meta[i];
      both[kMeta + i] = -meta[i];
    }
    {
      static const std::string detail = "shape check";
      detail::CollectiveGuard guard("validate", &detail, options_.timeout_seconds);
      MGCA_MPI(MPI_Allreduce(MPI_IN_PLACE, both.data(), 2 * kMeta, MPI_INT64_T, MPI_MIN, comm));
    }
    bool agree = true;
    for (int i = 0; i < kMeta; ++i) agree = agree && (both[i] == -both[kMeta + i]);
    if (agree) return;
    std::vector<int64_t> all(static_cast<size_t>(kMeta) * size_);
    MGCA_MPI(MPI_Allgather(meta.data(), kMeta, MPI_INT64_T, all.data(), kMeta, MPI_INT64_T, comm));
    static const char* names[] = {"?", "all_reduce", "all_gather", "reduce_scatter", "broadcast"};
    std::string ranks;
    for (int r = 0; r < size_; ++r) {
      const int64_t* m = &all[static_cast<size_t>(r) * kMeta];
      std::vector<int64_t> dims(m + 4, m + 4 + std::max<int64_t>(m[3], 0));
      ranks += fmt::format("{}rank {}: {} {} [{}] ({} {})", r ? "; " : "", r,
                           names[std::clamp<int64_t>(m[0], 0, 4)],
                           c10::toString(static_cast<torch::ScalarType>(m[2])), fmt::join(dims, ", "),
                           m[0] == kBroadcast ? "root" : "op", m[1]);
    }
    MGCA_FAIL("ranks disagree on a collective (every rank must pass the same dtype and shape): {}",
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
  int rank_ = 0;
  int size_ = 1;

  std::thread worker_;
  std::mutex queue_mutex_;
  std::condition_variable queue_signal_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
};

// ---- the single-process communicator ---------------------------------------

class DoneWork final : public Work {
 public:
  void wait() override {}
  bool test() override { return true; }
};

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
  void all_reduce(torch::Tensor& tensor, ReduceOp) override {
    MGCA_CHECK(tensor.defined(), "all_reduce: undefined tensor");
  }
  std::shared_ptr<Work> all_reduce_async(torch::Tensor, ReduceOp) override {
    return std::make_shared<DoneWork>();
  }
  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    return tensor.dim() == 0 ? tensor.reshape({1}).clone() : tensor.clone();
  }
  torch::Tensor reduce_scatter(const torch::Tensor& tensor, ReduceOp) override { return tensor.clone(); }
  void broadcast(torch::Tensor&, int root) override {
    MGCA_CHECK(root == 0, "broadcast root {} outside [0, 1)", root);
  }
  void barrier() override {}
  double all_reduce_scalar(double value, ReduceOp) override { return value; }
  bool any(bool flag) override { return flag; }
  std::string broadcast_string(const std::string& value, int) override { return value; }

 private:
  std::string host_;
  CommOptions options_;
};

}  // namespace

std::shared_ptr<Communicator> Communicator::world(const CommOptions& options) {
  return std::make_shared<MpiCommunicator>(options);
}

std::shared_ptr<Communicator> Communicator::single() {
  static const auto instance = std::make_shared<LocalCommunicator>();
  return instance;
}

}  // namespace mgca::comm
