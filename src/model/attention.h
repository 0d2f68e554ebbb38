// Multi-head self-attention shared by the ViT and BERT blocks (private).
#pragma once

#include <torch/types.h>

namespace mgca::model::detail {

// x2d: [b·L, D] already projected to qkv [b·L, 3D] (q, k, v blocks of D,
// heads of D/H inside each, as timm's qkv and HF's query/key/value).
// attn_mask: undefined or additive [b, 1, 1, L]. Returns the context
// [b·L, D] (heads concatenated). When cls_attention is non-null it receives
// softmax(q_0·Kᵀ/√Dh + mask) averaged over heads, [b, L], computed without
// gradient from the same q and k (only the [CLS] row: O(L) extra work, so the
// fused kernel can still be used for the full attention).
torch::Tensor self_attention(const torch::Tensor& qkv, int64_t batch, int64_t length, int64_t heads,
                             const torch::Tensor& attn_mask, double dropout_p,
                             torch::Tensor* cls_attention);

// softmax(q·kᵀ/√Dh + mask)·v with dropout on the probabilities (fast dropout,
// dropout.h). q, k, v [B, H, L, Dh] (any strides); mask undefined or additive,
// broadcastable to [B, H, L, L]. Returns [B, H, L, Dh].
torch::Tensor plain_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& attn_mask, double dropout_p);

// The qkv bias [3D] with its key third detached (undefined stays undefined).
// q·(k + b_k) adds the same q·b_k to every score of a query, which softmax
// cancels: the key bias's true gradient is exactly zero, and autograd's
// rounding residue would become lr-sized Adam steps that differ with the
// summation order (W). Detached, its gradient is exactly zero.
torch::Tensor qkv_bias_for_training(const torch::Tensor& bias);

// y = x·Wᵀ + b for x [..., in] via one GEMM on the 2-D view (no copy when x
// is contiguous). These three take their parameter gradients through
// comm::exact_op when runtime.batch_invariant is on (comm/exact_grad.h).
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);
// linear(x, weight, qkv_bias_for_training(bias)).
torch::Tensor qkv_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);
// at::layer_norm over the last dimension.
torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, double eps);

}  // namespace mgca::model::detail
