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
inline at::Tensor library_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& attn_mask) {
  std::optional<at::Tensor> mask;
  if (attn_mask.defined()) mask = attn_mask.to(q.scalar_type());
  return at::scaled_dot_product_attention(q, k, v, mask, /*dropout_p=*/0.0, /*is_causal=*/false);
}

// ---- mixed precision (train module) -----------------------------------------
// Autocast for the scope of the guard on CUDA (the trainer's forward under
// runtime.autocast = bf16); a disabled guard does nothing.
class CudaAutocastGuard {
 public:
  CudaAutocastGuard(bool enabled, at::ScalarType dtype) : enabled_(enabled) {
    if (!enabled_) return;
    previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
    at::autocast::increment_nesting();
  }
  ~CudaAutocastGuard() {
    if (!enabled_) return;
    // Leaving the outermost autocast region frees the cached casts of the weights.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
  }
  CudaAutocastGuard(const CudaAutocastGuard&) = delete;
  CudaAutocastGuard& operator=(const CudaAutocastGuard&) = delete;

 private:
  bool enabled_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

}  // namespace mgca::compat
