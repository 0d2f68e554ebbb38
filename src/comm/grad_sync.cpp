#include "mgca/comm/grad_sync.h"

#include <torch/torch.h>

#include <map>
#include <unordered_set>

#include "mgca/util/error.h"
#include "mgca/util/nvtx.h"
#include "mgca/util/rng.h"
#include "mgca/util/timer.h"

namespace mgca::comm {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

GradSync::NamedParameters from_dict(const torch::OrderedDict<std::string, torch::Tensor>& dict) {
  GradSync::NamedParameters out;
  out.reserve(dict.size());
  for (const auto& item : dict) out.emplace_back(item.key(), item.value());
  return out;
}

}  // namespace

GradSync::NoSync& GradSync::NoSync::operator=(NoSync&& other) noexcept {
  if (this != &other) {
    NoSync old(std::move(*this));
    owner_ = std::exchange(other.owner_, nullptr);
  }
  return *this;
}

GradSync::NoSync::~NoSync() {
  if (owner_ == nullptr) return;
  std::lock_guard<std::mutex> lock(owner_->mutex_);
  --owner_->no_sync_depth_;
}

GradSync::NoSync GradSync::no_sync() {
  std::lock_guard<std::mutex> lock(mutex_);
  MGCA_CHECK(next_launch_ == 0 && launched_from_hooks_ == 0 &&
                 std::find(ready_.begin(), ready_.end(), 1) == ready_.end(),
             "GradSync::no_sync() during a synchronised step: call finalize() first");
  ++no_sync_depth_;
  return NoSync(this);
}

GradSync::GradSync(const torch::OrderedDict<std::string, torch::Tensor>& parameters,
                   std::shared_ptr<Communicator> comm, GradSyncOptions options)
    : GradSync(from_dict(parameters), std::move(comm), options) {}

GradSync::GradSync(const NamedParameters& parameters, std::shared_ptr<Communicator> comm, GradSyncOptions options)
    : comm_(std::move(comm)), options_(options) {
  MGCA_CHECK(comm_ != nullptr, "GradSync needs a communicator");
  MGCA_CHECK(options_.bucket_cap_mb > 0 && options_.first_bucket_cap_mb > 0,
             "GradSync bucket caps must be positive, got bucket_cap_mb {} and first_bucket_cap_mb {}",
             options_.bucket_cap_mb, options_.first_bucket_cap_mb);
  std::unordered_set<const void*> seen;
  for (const auto& [name, tensor] : parameters) {
    MGCA_CHECK(tensor.defined(), "GradSync: parameter '{}' is undefined", name);
    if (!tensor.requires_grad()) continue;  // frozen: never synchronised
    MGCA_CHECK(tensor.is_leaf(), "GradSync: parameter '{}' is not a leaf tensor", name);
    MGCA_CHECK(tensor.is_floating_point(), "GradSync: parameter '{}' has dtype {}; gradients need floating point",
               name, c10::toString(tensor.scalar_type()));
    MGCA_CHECK(tensor.layout() == torch::kStrided, "GradSync: parameter '{}' is not a dense tensor", name);
    if (!seen.insert(tensor.unsafeGetTensorImpl()).second) continue;  // shared weight listed twice
    Param p;
    p.name = name;
    p.tensor = tensor;
    p.numel = tensor.numel();
    params_.push_back(std::move(p));
  }
  check_layout_across_ranks();
  build(options_);
  ready_.assign(params_.size(), 0);
  had_grad_.assign(params_.size(), 0);
  for (size_t i = 0; i < params_.size() && options_.overlap; ++i) {
    const int index = static_cast<int>(i);
    params_[i].hook = params_[i].tensor.register_hook([this, index](const torch::Tensor& grad) {
      on_gradient(index, grad);
    });
    params_[i].hooked = true;
  }
  stats_.buckets = static_cast<int>(buckets_.size());
}

GradSync::~GradSync() {
  for (auto& bucket : buckets_) {
    if (!bucket.work) continue;
    try {
      bucket.work->wait();
    } catch (...) {  // the step is being abandoned; its error was or will be reported elsewhere
    }
  }
  for (auto& p : params_) {
    if (p.hooked) p.tensor.remove_hook(p.hook);
  }
}

void GradSync::check_layout_across_ranks() {
  // FNV-1a over the layout, to compare it across ranks in one small message.
  uint64_t hash = util::kFnv1aBasis;
  for (const auto& p : params_) {
    hash = util::fnv1a(p.numel, hash);
    hash = util::fnv1a(static_cast<int64_t>(p.tensor.scalar_type()), hash);
    hash = util::fnv1a(int64_t{p.tensor.is_cuda() ? 1 : 0}, hash);
    for (int64_t d : p.tensor.sizes()) hash = util::fnv1a(d, hash);
  }
  auto mine = torch::tensor({static_cast<int64_t>(params_.size()), static_cast<int64_t>(hash >> 1)}, torch::kInt64);
  auto all = comm_->all_gather(mine.unsqueeze(0));  // [W, 2]
  const auto a = all.accessor<int64_t, 2>();
  bool agree = true;
  for (int64_t r = 1; r < all.size(0); ++r) agree = agree && a[r][0] == a[0][0] && a[r][1] == a[0][1];
  if (agree) return;
  std::string ranks;
  for (int64_t r = 0; r < all.size(0); ++r) {
    ranks += fmt::format("{}rank {}: {} parameters, layout hash {:x}", r ? "; " : "", r, a[r][0], a[r][1]);
  }
  MGCA_FAIL("GradSync: ranks pass different parameter lists (names aside, every rank needs the same "
            "shapes, dtypes and devices in the same order): {}",
            ranks);
}

void GradSync::build(GradSyncOptions options) {
  // Reverse registration order approximates the order backward produces
  // gradients. One open bucket per (dtype, device); a bucket closes once it
  // reaches its cap (the first one per key: first_bucket_cap_mb).
  struct Open {
    int bucket = -1;
    int64_t bytes = 0;
    bool first = true;
  };
  std::map<std::pair<int, std::string>, Open> open;
  for (int i = static_cast<int>(params_.size()) - 1; i >= 0; --i) {
    Param& p = params_[i];
    auto& slot = open[{static_cast<int>(p.tensor.scalar_type()), p.tensor.device().str()}];
    if (slot.bucket < 0) {
      slot.bucket = static_cast<int>(buckets_.size());
      slot.bytes = 0;
      buckets_.emplace_back();
    }
    Bucket& b = buckets_[slot.bucket];
    p.bucket = slot.bucket;
    p.offset = 0;
    for (int j : b.params) p.offset += params_[j].numel;
    b.params.push_back(i);
    slot.bytes += p.numel * static_cast<int64_t>(p.tensor.element_size());
    const double cap = slot.first ? options.first_bucket_cap_mb : options.bucket_cap_mb;
    if (static_cast<double>(slot.bytes) >= cap * kMiB) {
      slot.bucket = -1;
      slot.first = false;
    }
  }
  for (auto& b : buckets_) {
    int64_t numel = 0;
    for (int j : b.params) numel += params_[j].numel;
    const auto& t = params_[b.params.front()].tensor;
    b.flat = torch::zeros({numel}, t.options().requires_grad(false));
    if (options.wire_dtype == GradDtype::BFloat16 && b.flat.element_size() > 2) {
      b.wire = torch::empty({numel}, b.flat.options().dtype(torch::kBFloat16));
    }
    b.pending = static_cast<int>(b.params.size());
  }
}

std::vector<GradBucketInfo> GradSync::buckets() const {
  std::vector<GradBucketInfo> out;
  for (const auto& b : buckets_) {
    GradBucketInfo info;
    for (int j : b.params) info.names.push_back(params_[j].name);
    info.numel = b.flat.numel();
    info.bytes = info.numel * static_cast<int64_t>(b.flat.element_size());
    const auto& sent = b.wire.defined() ? b.wire : b.flat;
    info.wire_bytes = info.numel * static_cast<int64_t>(sent.element_size());
    info.dtype = b.flat.scalar_type();
    info.device = b.flat.device();
    out.push_back(std::move(info));
  }
  return out;
}

int GradSync::launched() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return next_launch_;
}

void GradSync::on_gradient(int index, const torch::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (no_sync_depth_ > 0) return;  // accumulation micro-step: autograd accumulates locally
  Param& p = params_[index];
  MGCA_CHECK(!ready_[index],
             "GradSync: parameter '{}' received a second gradient in one synchronised step (call "
             "finalize() after each synchronised backward; run accumulation micro-steps inside no_sync())",
             p.name);
  MGCA_CHECK(grad.layout() == torch::kStrided, "GradSync: parameter '{}' got a sparse gradient (unsupported)",
             p.name);
  torch::NoGradGuard no_grad;
  auto slot = buckets_[p.bucket].flat.narrow(0, p.offset, p.numel).view(p.tensor.sizes());
  slot.copy_(grad);
  // The hook runs before autograd adds `grad` into .grad, so .grad still
  // holds what earlier no_sync micro-steps accumulated.
  const auto& accumulated = p.tensor.grad();
  if (accumulated.defined()) slot.add_(accumulated);
  had_grad_[index] = 1;
  mark_ready(index);
  launch_in_order(true);
}

void GradSync::mark_without_gradient(int index) {
  Param& p = params_[index];
  torch::NoGradGuard no_grad;
  auto slot = buckets_[p.bucket].flat.narrow(0, p.offset, p.numel).view(p.tensor.sizes());
  const auto& accumulated = p.tensor.grad();
  if (accumulated.defined()) {
    slot.copy_(accumulated);
    had_grad_[index] = 1;
  } else {
    slot.zero_();
    had_grad_[index] = 0;
  }
  mark_ready(index);
}

void GradSync::mark_ready(int index) {
  ready_[index] = 1;
  --buckets_[params_[index].bucket].pending;
}

void GradSync::launch_in_order(bool from_hook) {
  const int count = static_cast<int>(buckets_.size());
  while (next_launch_ < count && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_];
    util::ScopedRange range("grad_bucket_all_reduce");  // the launch; NCCL's kernel shows on the stream
    // The layout was checked across ranks at construction: no per-call check.
    if (b.wire.defined()) {
      torch::NoGradGuard no_grad;
      b.wire.copy_(b.flat);
    }
    b.work = comm_->all_reduce_async(b.wire.defined() ? b.wire : b.flat, options_.sum ? ReduceOp::Sum : ReduceOp::Avg,
                                     /*validate=*/false);
    b.launched = true;
    if (from_hook) ++launched_from_hooks_;
    ++next_launch_;
  }
}

void GradSync::prepare_for_backward(const std::vector<torch::Tensor>& outputs) {
  using torch::autograd::Node;
  std::unordered_set<const Node*> reached;
  std::vector<Node*> stack;
  std::unordered_set<const void*> leaf_outputs;
  for (const auto& out : outputs) {
    if (!out.defined()) continue;
    if (auto fn = out.grad_fn()) {
      if (reached.insert(fn.get()).second) stack.push_back(fn.get());
    } else if (out.requires_grad()) {
      leaf_outputs.insert(out.unsafeGetTensorImpl());
    }
  }
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const auto& edge : node->next_edges()) {
      Node* next = edge.function.get();
      if (next != nullptr && reached.insert(next).second) stack.push_back(next);
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  MGCA_CHECK(no_sync_depth_ == 0, "GradSync::prepare_for_backward() inside no_sync()");
  for (size_t i = 0; i < params_.size(); ++i) {
    if (ready_[i]) continue;
    const auto& t = params_[i].tensor;
    auto accumulator = torch::autograd::impl::try_get_grad_accumulator(t);
    const bool reachable = leaf_outputs.count(t.unsafeGetTensorImpl()) > 0 ||
                           (accumulator != nullptr && reached.count(accumulator.get()) > 0);
    if (!reachable) mark_without_gradient(static_cast<int>(i));
  }
  launch_in_order(true);
}

void GradSync::finalize() {
  util::Stopwatch watch;
  int launched_by_hooks = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    MGCA_CHECK(no_sync_depth_ == 0, "GradSync::finalize() inside no_sync(): leave the accumulation guard first");
    launched_by_hooks = launched_from_hooks_;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (!ready_[i]) mark_without_gradient(static_cast<int>(i));
    }
    launch_in_order(false);
  }
  // Which parameters have a gradient on some rank (host flags, one message).
  auto flags = torch::from_blob(had_grad_.data(), {static_cast<int64_t>(had_grad_.size())}, torch::kUInt8).clone();
  comm_->all_reduce(flags, ReduceOp::Max);
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_) {
    b.work->wait();
    if (b.wire.defined()) b.flat.copy_(b.wire);  // the average, back to the gradients' dtype
  }

  const auto any = flags.accessor<uint8_t, 1>();
  int64_t without = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = params_[i];
    if (!any[static_cast<int64_t>(i)]) {
      ++without;  // no rank has a gradient: .grad stays undefined
      continue;
    }
    auto average = buckets_[p.bucket].flat.narrow(0, p.offset, p.numel).view(p.tensor.sizes());
    if (p.tensor.grad().defined()) {
      p.tensor.mutable_grad().copy_(average);
    } else {
      p.tensor.mutable_grad() = average.clone();
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.steps += 1;
  stats_.launched_during_backward = launched_by_hooks;
  stats_.launched_at_finalize = static_cast<int>(buckets_.size()) - launched_by_hooks;
  stats_.parameters_without_grad = without;
  reset_step();
  stats_.finalize_seconds = watch.seconds();
}

void GradSync::reset_step() {
  std::fill(ready_.begin(), ready_.end(), 0);
  std::fill(had_grad_.begin(), had_grad_.end(), 0);
  for (auto& b : buckets_) {
    b.pending = static_cast<int>(b.params.size());
    b.launched = false;
    b.work.reset();
  }
  next_launch_ = 0;
  launched_from_hooks_ = 0;
}

}  // namespace mgca::comm
