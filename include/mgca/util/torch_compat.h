// The one place for what depends on the libtorch version we build against
// (2.11, pinned: scripts/requirements.txt) and on its CPU runtime (its BLAS).
// Code elsewhere calls these wrappers instead of testing versions itself.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>
#include <ATen/autocast_mode.h>

namespace mgca::compat {

inline constexpr int kTorchMajor = TORCH_VERSION_MAJOR;
inline constexpr int kTorchMinor = TORCH_VERSION_MINOR;

// ---- CPU threads (every program that computes) ------------------------------
// Intra-op threads for libtorch's pool and its BLAS (util/cpu_threads.h: in
// libtorch 2.11 one call sizes both). Every program calls this, so that a
// BLAS with a pool of its own needs one change here.
inline void set_cpu_threads(int threads) { at::set_num_threads(threads); }

// ---- attention (model module) ----------------------------------------------
// libtorch's scaled-dot-product attention with autograd (flash/memory-
// efficient kernels on GPU, a flash kernel on CPU), without dropout: q, k, v
// [B, H, L, Dh] (any strides); attn_mask undefined or an additive float mask
// broadcastable to [B, H, L, L]. Returns [B, H, L, Dh].
// Whether library_attention() is the faster way for these q, k, v: not in
// reduced precision on the CPU, where libtorch 2.11's flash kernel in bf16
// (fwd + bwd) costs 2–4× the plain path's bf16 GEMMs + fp32 softmax
// (docs/performance.md, "bf16 on the CPU"); everywhere else it is.
inline bool library_attention_is_faster(const at::Tensor& q) {
  return !(q.is_cpu() && at::isReducedFloatingType(q.scalar_type()));
}
inline at::Tensor library_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& attn_mask) {
  std::optional<at::Tensor> mask;
  if (attn_mask.defined()) mask = attn_mask.to(q.scalar_type());
  return at::scaled_dot_product_attention(q, k, v, mask, /*dropout_p=*/0.0, /*is_causal=*/false);
}

// ---- mixed precision (train and objectives modules) ---------------------------
// Autocast on one device type (CPU or CUDA) for the scope of the guard: the
// trainer's forward under runtime.autocast = bf16. A disabled guard does
// nothing. Thread-local, like libtorch's autocast state: it covers the ops
// this thread dispatches; backward runs in the state backward() is called in
// (the trainer calls it outside the guard).
class AutocastGuard {
 public:
  AutocastGuard(bool enabled, at::DeviceType device_type, at::ScalarType dtype)
      : enabled_(enabled), device_type_(device_type) {
    if (!enabled_) return;
    TORCH_CHECK(at::autocast::is_autocast_available(device_type_), "autocast is not available on ",
                c10::DeviceTypeName(device_type_));
    previous_enabled_ = at::autocast::is_autocast_enabled(device_type_);
    previous_dtype_ = at::autocast::get_autocast_dtype(device_type_);
    at::autocast::set_autocast_enabled(device_type_, true);
    at::autocast::set_autocast_dtype(device_type_, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!enabled_) return;
    // Leaving the outermost autocast region frees the cached casts of the weights.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_type_, previous_enabled_);
    at::autocast::set_autocast_dtype(device_type_, previous_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_;
  at::DeviceType device_type_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

// Autocast off on every device type for the scope of the guard, whatever the
// caller enabled: ops run in their inputs' dtypes (the objectives' float32
// softmaxes, cross-entropies and Sinkhorn, and the matmuls that feed them,
// which autocast would otherwise lower to bf16). Thread-local; the enclosing
// state returns at the end of the scope.
class AutocastOffGuard {
 public:
  AutocastOffGuard() = default;
  AutocastOffGuard(const AutocastOffGuard&) = delete;
  AutocastOffGuard& operator=(const AutocastOffGuard&) = delete;

 private:
  // libtorch's autocast is its Autocast* dispatch keys: "enabled" means not
  // excluded in this thread (at::autocast::is_autocast_enabled).
  c10::impl::ExcludeDispatchKeyGuard no_autocast_{c10::autocast_dispatch_keyset};
};

}  // namespace mgca::compat
