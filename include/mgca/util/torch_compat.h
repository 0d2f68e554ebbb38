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

// ---- mixed precision (train module) -----------------------------------------
// Autocast for the scope of the guard on CUDA (the trainer's forward under
// runtime.autocast = bf16); a disabled guard does nothing. libtorch 2.4 took
// a device type in the autocast API and deprecated the 1.x calls.
class CudaAutocastGuard {
 public:
  CudaAutocastGuard(bool enabled, at::ScalarType dtype) : enabled_(enabled) {
    if (!enabled_) return;
#if MGCA_TORCH_AT_LEAST(2, 4)
    previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
    previous_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
#endif
    at::autocast::increment_nesting();
  }
  ~CudaAutocastGuard() {
    if (!enabled_) return;
    // Leaving the outermost autocast region frees the cached casts of the weights.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if MGCA_TORCH_AT_LEAST(2, 4)
    at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#else
    at::autocast::set_enabled(previous_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
#endif
  }
  CudaAutocastGuard(const CudaAutocastGuard&) = delete;
  CudaAutocastGuard& operator=(const CudaAutocastGuard&) = delete;

 private:
  bool enabled_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

}  // namespace mgca::compat
