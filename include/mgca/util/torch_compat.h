// The one place that hides differences between libtorch 1.13 (Debian, CPU)
// and libtorch 2.x (the CUDA builds on GPU machines), and between libtorch
// builds' CPU runtimes (their BLAS). Code elsewhere calls these wrappers
// instead of testing versions itself.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>
#include <ATen/autocast_mode.h>

#include "mgca/util/cpu_threads.h"

#define MGCA_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||       \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace mgca::compat {

inline constexpr int kTorchMajor = TORCH_VERSION_MAJOR;
inline constexpr int kTorchMinor = TORCH_VERSION_MINOR;

// ---- CPU threads (every program that computes) ------------------------------
// Intra-op threads for libtorch's pool and for its BLAS where that is OpenBLAS
// (util/cpu_threads.h: at::set_num_threads does not size OpenBLAS's own
// pool). Call this, never at::set_num_threads alone.
inline void set_cpu_threads(int threads) {
  at::set_num_threads(threads);
  util::set_blas_threads(threads);
}

// ---- attention (model module) ----------------------------------------------
// True where libtorch has a public fused scaled-dot-product attention with
// autograd (2.x: flash/memory-efficient kernels on GPU, a flash kernel on CPU
// from 2.1). libtorch 1.13's at::_scaled_dot_product_attention is its math
// path on CPU (the same matmul/softmax/matmul; measured no faster, see
// docs/performance.md) and its fused kernels have no backward, so on 1.13 the
// model uses its own plain path (src/model/attention.cpp).
inline constexpr bool kFusedAttention = MGCA_TORCH_AT_LEAST(2, 0);

// libtorch's own scaled-dot-product attention, with autograd. q, k, v:
// [B, H, L, Dh] (any strides); attn_mask: undefined or an additive float mask
// broadcastable to [B, H, L, L]; dropout on the probabilities (libtorch's
// RNG). Returns [B, H, L, Dh]. Fused only where kFusedAttention.
inline at::Tensor library_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& attn_mask, double dropout_p) {
  c10::optional<at::Tensor> mask;
  if (attn_mask.defined()) mask = attn_mask.to(q.scalar_type());
#if MGCA_TORCH_AT_LEAST(2, 0)
  return at::scaled_dot_product_attention(q, k, v, mask, dropout_p, /*is_causal=*/false);
#else
  return std::get<0>(at::_scaled_dot_product_attention(q, k, v, mask, dropout_p, /*need_attn_weights=*/false,
                                                       /*is_causal=*/false));
#endif
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
