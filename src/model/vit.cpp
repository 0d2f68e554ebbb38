#include "mgca/model/vit.h"

#include <torch/torch.h>

#include "attention.h"
#include "format.h"
#include "mgca/comm/exact_grad.h"
#include "mgca/util/error.h"

namespace mgca::model {

torch::Tensor fold_input_channels(const torch::Tensor& weight, int64_t in_channels) {
  MGCA_CHECK(weight.dim() == 4 && weight.size(1) == 3,
             "first-layer weight must be [out, 3, kh, kw], got {}", detail::dims(weight.sizes()));
  if (in_channels == 3) return weight;
  MGCA_CHECK(in_channels == 1, "images must have 1 (gray) or 3 (RGB) channels, got {}", in_channels);
  // conv(gray replicated to RGB, W) == conv(gray, Σ_c W[:, c]).
  return weight.sum(1, /*keepdim=*/true);
}

namespace {
void trunc_normal_(torch::Tensor t, double std) {
  torch::NoGradGuard no_grad;
  t.normal_(0.0, std).clamp_(-2.0, 2.0);  // timm's trunc_normal_(std, a=-2, b=2)
}
}  // namespace

ViTBlockImpl::ViTBlockImpl(const ViTConfig& c) : heads_(c.heads) {
  namespace nn = torch::nn;
  norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({c.dim}).eps(c.ln_eps)));
  auto attn = register_module("attn", std::make_shared<nn::Module>("Attention"));
  qkv = attn->register_module("qkv", nn::Linear(nn::LinearOptions(c.dim, 3 * c.dim).bias(c.qkv_bias)));
  proj = attn->register_module("proj", nn::Linear(c.dim, c.dim));
  norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({c.dim}).eps(c.ln_eps)));
  auto mlp = register_module("mlp", std::make_shared<nn::Module>("Mlp"));
  fc1 = mlp->register_module("fc1", nn::Linear(c.dim, c.mlp_dim));
  fc2 = mlp->register_module("fc2", nn::Linear(c.mlp_dim, c.dim));
}

torch::Tensor ViTBlockImpl::forward(const torch::Tensor& x, torch::Tensor* cls_attention) {
  const int64_t b = x.size(0), n = x.size(1), d = x.size(2);
  // Tokens as one [b·N, D] matrix: every Linear is one GEMM.
  const auto x2 = x.reshape({b * n, d});
  const double eps1 = norm1->options.eps(), eps2 = norm2->options.eps();
  auto h = detail::layer_norm(x2, norm1->weight, norm1->bias, eps1);
  h = detail::qkv_linear(h, qkv->weight, qkv->bias);
  h = detail::self_attention(h, b, n, heads_, {}, 0.0, cls_attention);
  auto y = x2 + detail::linear(h, proj->weight, proj->bias);
  h = detail::layer_norm(y, norm2->weight, norm2->bias, eps2);
  h = at::gelu(detail::linear(h, fc1->weight, fc1->bias));
  y = y + detail::linear(h, fc2->weight, fc2->bias);
  return y.view({b, n, d});
}

ViTImpl::ViTImpl(const ViTConfig& c) : config_(c) {
  namespace nn = torch::nn;
  MGCA_CHECK(c.image_size % c.patch_size == 0, "ViT: image size {} is not a multiple of the patch size {}",
             c.image_size, c.patch_size);
  MGCA_CHECK(c.dim % c.heads == 0, "ViT: dim {} is not divisible by {} heads", c.dim, c.heads);
  auto patch_embed = register_module("patch_embed", std::make_shared<nn::Module>("PatchEmbed"));
  patch_proj = patch_embed->register_module(
      "proj", nn::Conv2d(nn::Conv2dOptions(3, c.dim, c.patch_size).stride(c.patch_size)));
  cls_token = register_parameter("cls_token", torch::zeros({1, 1, c.dim}));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, c.num_patches() + 1, c.dim}));
  blocks = register_module("blocks", nn::ModuleList());
  for (int64_t i = 0; i < c.depth; ++i) blocks->push_back(ViTBlock(c));
  norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({c.dim}).eps(c.ln_eps)));
  reset_parameters();
}

void ViTImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  trunc_normal_(pos_embed, 0.02);
  trunc_normal_(cls_token, 0.02);
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::Linear>()) {
      trunc_normal_(linear->weight, 0.02);
      if (linear->bias.defined()) linear->bias.zero_();
    } else if (auto* ln = module->as<torch::nn::LayerNorm>()) {
      ln->weight.fill_(1.0);
      ln->bias.zero_();
    }
  }
}

int64_t ViTImpl::num_patches(int64_t image_size) const {
  const int64_t g = image_size / config_.patch_size;
  return g * g;
}

ImageFeatures ViTImpl::forward(const torch::Tensor& images) {
  const auto& c = config_;
  MGCA_CHECK(images.dim() == 4 && images.size(2) == c.image_size && images.size(3) == c.image_size,
             "ViT: images must be [b, 1|3, {}, {}], got {}", c.image_size, c.image_size, detail::dims(images.sizes()));
  const int64_t b = images.size(0), p = c.num_patches(), d = c.dim;
  // The stride-p p×p convolution as one GEMM over the patches ([b·P, C·p·p],
  // rows in (gy, gx) order, columns in the weight's (c, ky, kx) order): the
  // tokens come out as [b, P, D] directly, and for gray input it is faster
  // than the 1-channel convolution (bench/encoders).
  const int64_t ch = images.size(1), g = c.grid(), ps = c.patch_size;
  const auto patches = images.reshape({b, ch, g, ps, g, ps}).permute({0, 2, 4, 1, 3, 5}).reshape({b * p, ch * ps * ps});
  // One function of the patches and the five parameters, for comm::exact_op
  // (runtime.batch_invariant; otherwise a plain call).
  auto x = comm::exact_op(
      [=](const std::vector<torch::Tensor>& in, const std::vector<torch::Tensor>& w) {
        const auto weight = fold_input_channels(w[0], ch);
        auto tokens = at::addmm(w[1], in[0], weight.reshape({d, ch * ps * ps}).t()).view({b, p, d});
        return at::cat({w[2].expand({b, 1, d}), tokens}, 1) + w[3];
      },
      {patches}, {patch_proj->weight, patch_proj->bias, cls_token, pos_embed});
  const int64_t depth = static_cast<int64_t>(blocks->size());
  ImageFeatures out;
  torch::Tensor cls_attention;
  for (int64_t i = 0; i < depth; ++i) {
    x = blocks->ptr<ViTBlockImpl>(i)->forward(x, i == depth - 1 ? &cls_attention : nullptr);
  }
  x = detail::layer_norm(x, norm->weight, norm->bias, norm->options.eps());
  out.global = x.select(1, 0);
  out.local = x.narrow(1, 1, p);
  if (cls_attention.defined()) out.patch_attention = cls_attention.narrow(1, 1, p);
  return out;
}

}  // namespace mgca::model
