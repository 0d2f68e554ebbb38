#include "attention.h"

#include "mgca/model/dropout.h"

#include <cmath>

#include "format.h"
#include "mgca/comm/exact_grad.h"
#include "mgca/util/error.h"
#include "mgca/util/torch_compat.h"

namespace mgca::model::detail {

torch::Tensor plain_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& attn_mask, double dropout_p) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  // Scaling q (L·Dh values, fused into the copy matmul makes anyway) is cheaper than scaling L·L scores.
  auto scores = at::matmul(q * scale, k.transpose(-2, -1));
  if (attn_mask.defined()) scores.add_(attn_mask);  // matmul's backward does not need its output
  auto probs = at::softmax(scores, -1);
  return at::matmul(model::fast_dropout(probs, dropout_p, dropout_p > 0.0), v);
}

torch::Tensor self_attention(const torch::Tensor& qkv, int64_t batch, int64_t length, int64_t heads,
                             const torch::Tensor& attn_mask, double dropout_p,
                             torch::Tensor* cls_attention) {
  MGCA_CHECK(qkv.dim() == 2 && qkv.size(0) == batch * length && qkv.size(1) % (3 * heads) == 0,
             "self_attention: qkv has shape {}, expected [{}, 3·D] with D divisible by {} heads",
             detail::dims(qkv.sizes()), batch * length, heads);
  const int64_t dim = qkv.size(1) / 3;
  const int64_t head_dim = dim / heads;
  // [b, L, 3, H, Dh] → [3, b, H, L, Dh]: views, no copy.
  const auto parts = qkv.view({batch, length, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
  const auto q = parts[0], k = parts[1], v = parts[2];
  if (cls_attention != nullptr) {
    torch::NoGradGuard no_grad;
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
    auto scores = at::matmul(q.narrow(2, 0, 1) * scale, k.transpose(-2, -1));  // [b, H, 1, L]
    if (attn_mask.defined()) scores.add_(attn_mask);
    *cls_attention = at::softmax(scores, -1).mean(1).squeeze(1);  // [b, L]
  }
  // libtorch's fused kernel would draw the dropout mask from its own generator: not keyed by the
  // sample, so not the same on W ranks as on one (docs/design.md, Models). With dropout the plain
  // path runs, its mask from fast_dropout; so does bf16 on the CPU, where it is faster.
  const auto context = dropout_p == 0.0 && compat::library_attention_is_faster(q)
                           ? compat::library_attention(q, k, v, attn_mask)
                           : plain_attention(q, k, v, attn_mask, dropout_p);
  return context.transpose(1, 2).reshape({batch * length, dim});
}

torch::Tensor qkv_bias_for_training(const torch::Tensor& bias) {
  if (!bias.defined() || !bias.requires_grad() || !at::GradMode::is_enabled()) return bias;
  const int64_t d = bias.size(0) / 3;
  return at::cat({bias.narrow(0, 0, d), bias.narrow(0, d, d).detach(), bias.narrow(0, 2 * d, d)});
}

namespace {

torch::Tensor plain_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (x.dim() == 2) {
    return bias.defined() ? at::addmm(bias, x, weight.t()) : at::mm(x, weight.t());
  }
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  const auto x2d = x.reshape({-1, x.size(-1)});
  const auto y = bias.defined() ? at::addmm(bias, x2d, weight.t()) : at::mm(x2d, weight.t());
  return y.view(sizes);
}

}  // namespace

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!comm::exact_gradients_active()) return plain_linear(x, weight, bias);
  if (!bias.defined()) {
    return comm::exact_op([](const auto& in, const auto& p) { return plain_linear(in[0], p[0], {}); }, {x}, {weight});
  }
  return comm::exact_op([](const auto& in, const auto& p) { return plain_linear(in[0], p[0], p[1]); }, {x},
                        {weight, bias});
}

torch::Tensor qkv_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!comm::exact_gradients_active() || !bias.defined()) return linear(x, weight, qkv_bias_for_training(bias));
  // The key third is detached inside, where the float64 recomputation differentiates.
  return comm::exact_op(
      [](const auto& in, const auto& p) { return plain_linear(in[0], p[0], qkv_bias_for_training(p[1])); }, {x},
      {weight, bias});
}

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, double eps) {
  const int64_t d = x.size(-1);
  if (!comm::exact_gradients_active()) return at::layer_norm(x, {d}, weight, bias, eps);
  return comm::exact_op(
      [d, eps](const auto& in, const auto& p) { return at::layer_norm(in[0], {d}, p[0], p[1], eps); }, {x},
      {weight, bias});
}

}  // namespace mgca::model::detail
