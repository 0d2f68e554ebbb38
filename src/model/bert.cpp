#include "mgca/model/bert.h"

#include <torch/torch.h>

#include <optional>

#include "attention.h"
#include "mgca/model/dropout.h"
#include "format.h"
#include "mgca/comm/exact_grad.h"
#include "mgca/util/error.h"

namespace mgca::model {
namespace {
namespace nn = torch::nn;

nn::LayerNorm layer_norm(int64_t dim, double eps) {
  return nn::LayerNorm(nn::LayerNormOptions({dim}).eps(eps));
}

bool all_frozen(const nn::Module& module) {
  for (const auto& p : module.parameters()) {
    if (p.requires_grad()) return false;
  }
  return true;
}
}  // namespace

BertLayerImpl::BertLayerImpl(const BertConfig& c) : config_(c) {
  auto attn = register_module("attn", std::make_shared<nn::Module>("Attention"));
  qkv = attn->register_module("qkv", nn::Linear(c.hidden, 3 * c.hidden));
  proj = attn->register_module("proj", nn::Linear(c.hidden, c.hidden));
  norm1 = register_module("norm1", layer_norm(c.hidden, c.ln_eps));
  fc1 = register_module("fc1", nn::Linear(c.hidden, c.intermediate));
  fc2 = register_module("fc2", nn::Linear(c.intermediate, c.hidden));
  norm2 = register_module("norm2", layer_norm(c.hidden, c.ln_eps));
}

torch::Tensor BertLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask,
                                     torch::Tensor* cls_attention) {
  const int64_t b = x.size(0), l = x.size(1), d = x.size(2);
  const bool train = is_training();
  const auto x2 = x.reshape({b * l, d});
  auto h = detail::qkv_linear(x2, qkv->weight, qkv->bias);
  h = detail::self_attention(h, b, l, config_.heads, mask, train ? config_.attention_dropout : 0.0,
                             cls_attention);
  h = model::fast_dropout(detail::linear(h, proj->weight, proj->bias), config_.hidden_dropout, train);
  const auto y = detail::layer_norm(h + x2, norm1->weight, norm1->bias, config_.ln_eps);
  h = at::gelu(detail::linear(y, fc1->weight, fc1->bias));
  h = model::fast_dropout(detail::linear(h, fc2->weight, fc2->bias), config_.hidden_dropout, train);
  return detail::layer_norm(h + y, norm2->weight, norm2->bias, config_.ln_eps).view({b, l, d});
}

BertImpl::BertImpl(const BertConfig& c) : config_(c) {
  MGCA_CHECK(c.hidden % c.heads == 0, "BERT: hidden size {} is not divisible by {} heads", c.hidden, c.heads);
  MGCA_CHECK(c.frozen_layers >= 0 && c.frozen_layers <= c.num_layers,
             "BERT: frozen_layers {} outside [0, {}]", c.frozen_layers, c.num_layers);
  auto embeddings = register_module("embeddings", std::make_shared<nn::Module>("Embeddings"));
  word_embeddings = embeddings->register_module("word_embeddings", nn::Embedding(c.vocab_size, c.hidden));
  position_embeddings =
      embeddings->register_module("position_embeddings", nn::Embedding(c.max_positions, c.hidden));
  token_type_embeddings =
      embeddings->register_module("token_type_embeddings", nn::Embedding(c.type_vocab_size, c.hidden));
  embeddings_norm = embeddings->register_module("norm", layer_norm(c.hidden, c.ln_eps));
  layers = register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(BertLayer(c));
  reset_parameters();
  apply_freezing();
}

void BertImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* linear = module->as<nn::Linear>()) {
      linear->weight.normal_(0.0, 0.02);
      linear->bias.zero_();
    } else if (auto* embedding = module->as<nn::Embedding>()) {
      embedding->weight.normal_(0.0, 0.02);
    } else if (auto* ln = module->as<nn::LayerNorm>()) {
      ln->weight.fill_(1.0);
      ln->bias.zero_();
    }
  }
}

void BertImpl::apply_freezing() {
  for (auto& p : named_children()["embeddings"]->parameters()) p.requires_grad_(!config_.freeze_embeddings);
  for (int64_t i = 0; i < static_cast<int64_t>(layers->size()); ++i) {
    for (auto& p : layers[i]->parameters()) p.requires_grad_(i >= config_.frozen_layers);
  }
}

torch::Tensor BertImpl::embed(const torch::Tensor& input_ids) {
  const int64_t l = input_ids.size(1);
  // word + position + token type 0, then LayerNorm and dropout.
  // comm::exact_op: exact gradients under runtime.batch_invariant (the
  // embedding's backward sums the rows of every token id), else a plain call.
  auto x = comm::exact_op(
      [l](const std::vector<torch::Tensor>& in, const std::vector<torch::Tensor>& w) {
        return at::embedding(w[0], in[0]) + (w[1].narrow(0, 0, l) + w[2][0]);
      },
      {input_ids}, {word_embeddings->weight, position_embeddings->weight, token_type_embeddings->weight});
  x = detail::layer_norm(x, embeddings_norm->weight, embeddings_norm->bias, config_.ln_eps);
  return model::fast_dropout(x, config_.hidden_dropout, is_training());
}

TextFeatures BertImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  MGCA_CHECK(input_ids.dim() == 2 && input_ids.scalar_type() == torch::kLong,
             "BERT: input_ids must be int64 [b, L], got {} {}", c10::toString(input_ids.scalar_type()), detail::dims(input_ids.sizes()));
  MGCA_CHECK(attention_mask.sizes() == input_ids.sizes(),
             "BERT: attention_mask {} does not match input_ids {}", detail::dims(attention_mask.sizes()), detail::dims(input_ids.sizes()));
  MGCA_CHECK(input_ids.size(1) <= config_.max_positions, "BERT: {} tokens exceed the {} positions",
             input_ids.size(1), config_.max_positions);
  const int64_t b = input_ids.size(0), l = input_ids.size(1);
  const auto dtype = word_embeddings->weight.scalar_type();
  // Additive mask [b, 1, 1, L]: 0 for real tokens, −10000 for pads (the reference's value).
  const auto mask = ((1 - attention_mask.to(dtype)) * -10000.0).view({b, 1, 1, l});

  // The frozen prefix (embeddings and the first layers whose parameters all
  // have requires_grad = false) runs without recording autograd.
  const int64_t depth = static_cast<int64_t>(layers->size());
  int64_t frozen_prefix = -1;  // -1: embeddings trainable
  if (all_frozen(*named_children()["embeddings"])) {
    frozen_prefix = 0;
    while (frozen_prefix < depth && all_frozen(*layers[frozen_prefix])) ++frozen_prefix;
  }
  TextFeatures out;
  torch::Tensor x;
  {
    std::optional<torch::NoGradGuard> no_grad;
    if (frozen_prefix >= 0) no_grad.emplace();
    x = embed(input_ids);
    for (int64_t i = 0; i < std::max<int64_t>(frozen_prefix, 0); ++i) {
      x = layers->ptr<BertLayerImpl>(i)->forward(x, mask, i == depth - 1 ? &out.cls_attention : nullptr);
    }
  }
  for (int64_t i = std::max<int64_t>(frozen_prefix, 0); i < depth; ++i) {
    x = layers->ptr<BertLayerImpl>(i)->forward(x, mask, i == depth - 1 ? &out.cls_attention : nullptr);
  }
  out.hidden = x;
  return out;
}

}  // namespace mgca::model
