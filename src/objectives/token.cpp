// CTA: cross-attention token-wise alignment (docs/contract.md §2.2), batched over samples
// (bmm) where the reference loops over the batch.
#include <torch/torch.h>

#include <limits>

#include "internal.h"
#include "mgca/objectives/objectives.h"

namespace mgca::objectives {
namespace {

namespace F = torch::nn::functional;

// torch.quantile's linear interpolation per row over the first count[i]
// entries of `sorted` (ascending): rank = q·(count−1), lerp between the
// entries below and above it. Rank arithmetic in the data's dtype, as
// torch.quantile does it.
torch::Tensor row_quantile(const torch::Tensor& sorted, const torch::Tensor& count, double q) {
  auto last = (count - 1).clamp_min(0).to(sorted.scalar_type());               // [b]
  auto rank = torch::full({}, q, sorted.options()) * last;                      // [b]
  auto below = rank.to(torch::kLong);                                           // truncation, rank ≥ 0
  auto above = rank.ceil().to(torch::kLong);
  auto v_below = sorted.gather(1, below.unsqueeze(1)).squeeze(1);
  auto v_above = sorted.gather(1, above.unsqueeze(1)).squeeze(1);
  return v_below.lerp(v_above, rank - below.to(sorted.scalar_type()));
}

// The weighted token losses of one square similarity matrix s [b, n, n],
// fused: row j's cross-entropy over s[j, :] and column j's over s[:, j],
// both with target j, weighted by ω [b, n] and scaled by 1/b:
//   loss_row = −Σ ω_j log_softmax_row(s)_jj / b,  loss_col likewise over columns.
// With mask_pads, `pad` [b, n] (bool) takes the other pad entries out of both
// denominators (each keeps its own diagonal entry). Forward keeps the two
// log-softmax matrices; backward turns them in place into
// ∂/∂s = P_row·ω_j g_r/b + P_col·ω_l g_c/b − diag((g_r + g_c) ω/b) — no
// allocation and five passes, where autograd's chain (log-softmax, diagonal,
// add backwards) allocates four b×n×n tensors. Once-differentiable: a
// second backward through the same graph is an error. Returns
// {loss_row, loss_col, ce_row, ce_col}; the per-token cross-entropies [b, n]
// carry no grad.
class TokenCE : public torch::autograd::Function<TokenCE> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& s,
                                                const torch::Tensor& weights, const torch::Tensor& pad,
                                                bool mask_pads, double scale) {
    torch::Tensor ls_row, ls_col;
    if (mask_pads) {
      const auto neg_inf = -std::numeric_limits<double>::infinity();
      auto off_diagonal = torch::eye(s.size(1), pad.options()).logical_not().unsqueeze(0);
      ls_row = torch::log_softmax(s.masked_fill(pad.unsqueeze(1).logical_and(off_diagonal), neg_inf), 2);
      ls_col = torch::log_softmax(s.masked_fill(pad.unsqueeze(2).logical_and(off_diagonal), neg_inf), 1);
    } else {
      ls_row = torch::log_softmax(s, 2);
      ls_col = torch::log_softmax(s, 1);
    }
    auto ce_row = -ls_row.diagonal(0, 1, 2);  // [b, n]
    auto ce_col = -ls_col.diagonal(0, 1, 2);
    auto loss_row = (ce_row * weights).sum() * scale;
    auto loss_col = (ce_col * weights).sum() * scale;
    ctx->saved_data["ls_row"] = ls_row;
    ctx->saved_data["ls_col"] = ls_col;
    ctx->saved_data["weights"] = weights;
    ctx->saved_data["scale"] = scale;
    ctx->mark_non_differentiable({ce_row, ce_col});
    return {loss_row, loss_col, ce_row, ce_col};  // ce_* are new tensors (negation): safe from backward
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto it = ctx->saved_data.find("ls_row");
    MGCA_CHECK(it != ctx->saved_data.end(),
               "token loss: backward ran twice through the same graph (retain_graph is not supported)");
    auto grad = it->second.toTensor();  // ours alone from here on
    auto p_col = ctx->saved_data["ls_col"].toTensor();
    ctx->saved_data.erase("ls_row");
    ctx->saved_data.erase("ls_col");
    const auto weights = ctx->saved_data["weights"].toTensor();
    const double scale = ctx->saved_data["scale"].toDouble();
    auto factor = [&](const torch::Tensor& g) {  // ω · g / b, [b, n]
      return g.defined() ? weights * (g.to(grad.scalar_type()) * scale) : torch::zeros_like(weights);
    };
    const auto w_row = factor(grads[0]);
    const auto w_col = factor(grads[1]);
    grad.exp_().mul_(w_row.unsqueeze(2));     // row softmax (0 at masked entries) · ω_j g_r/b
    grad.addcmul_(p_col.exp_(), w_col.unsqueeze(1));
    grad.diagonal(0, 1, 2).sub_(w_row + w_col);
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor clip_and_normalize_weights(const torch::Tensor& weights, double low, double high,
                                         bool nonzero_only) {
  detail::check_float(weights, "clip_and_normalize_weights", "weights", 2);
  MGCA_CHECK(0.0 <= low && low <= high && high <= 1.0,
             "clip_and_normalize_weights: quantiles must satisfy 0 <= low <= high <= 1, got {} and {}",
             low, high);
  torch::NoGradGuard no_grad;
  detail::FullPrecision full_precision;
  auto w = detail::upcast(weights.detach());
  auto valid = nonzero_only ? w.ne(0) : torch::ones_like(w, w.options().dtype(torch::kBool));
  auto count = valid.sum(1);  // [b] int64
  // Entries outside the quantile set sort to the end; the set is the first count[i].
  auto sorted = std::get<0>(w.masked_fill(valid.logical_not(), std::numeric_limits<double>::infinity()).sort(1));
  auto lo = row_quantile(sorted, count, low).unsqueeze(1);
  auto hi = row_quantile(sorted, count, high).unsqueeze(1);
  auto clipped = torch::where(valid, torch::minimum(torch::maximum(w, lo), hi), torch::zeros_like(w));
  auto sum = clipped.sum(1, /*keepdim=*/true);
  auto normalized = torch::where(sum > 0, clipped / sum, torch::zeros_like(clipped));
  return normalized.to(weights.scalar_type());
}

CtaResult token_alignment(const torch::Tensor& word_emb, const torch::Tensor& word_weight,
                          const torch::Tensor& word_mask, const torch::Tensor& patch_emb,
                          const torch::Tensor& patch_weight, const ObjectiveOptions& opts,
                          CtaTrace* trace) {
  const char* fn = "token_alignment";
  detail::FullPrecision full_precision;
  detail::check_float(word_emb, fn, "word_emb", 3);
  detail::check_float(patch_emb, fn, "patch_emb", 3);
  detail::check_same_kind(word_emb, "word_emb", patch_emb, "patch_emb", fn);
  const int64_t b = word_emb.size(0), S = word_emb.size(1), d = word_emb.size(2);
  const int64_t P = patch_emb.size(1);
  MGCA_CHECK(b > 0 && S > 0 && P > 0 && d > 0, "{}: empty input (word_emb {}, patch_emb {})", fn,
             detail::shape(word_emb), detail::shape(patch_emb));
  MGCA_CHECK(patch_emb.size(0) == b && patch_emb.size(2) == d,
             "{}: patch_emb {} does not match word_emb {} (expected [{}, P, {}])", fn,
             detail::shape(patch_emb), detail::shape(word_emb), b, d);
  detail::check_float(word_weight, fn, "word_weight", 2);
  MGCA_CHECK(word_weight.size(0) == b && word_weight.size(1) == S,
             "{}: word_weight {} must be [{}, {}] like word_emb {}", fn, detail::shape(word_weight), b, S,
             detail::shape(word_emb));
  MGCA_CHECK(word_mask.defined() && word_mask.scalar_type() == torch::kBool,
             "{}: word_mask must be a bool tensor (true at pad words)", fn);
  MGCA_CHECK(word_mask.dim() == 2 && word_mask.size(0) == b && word_mask.size(1) == S,
             "{}: word_mask {} must be [{}, {}] like word_emb {}", fn, detail::shape(word_mask), b, S,
             detail::shape(word_emb));
  if (patch_weight.defined()) {
    detail::check_float(patch_weight, fn, "patch_weight", 2);
    MGCA_CHECK(patch_weight.size(0) == b && patch_weight.size(1) == P,
               "{}: patch_weight {} must be [{}, {}] like patch_emb {}", fn, detail::shape(patch_weight),
               b, P, detail::shape(patch_emb));
  }
  const double tau = opts.local_temperature;
  MGCA_CHECK(tau > 0, "{}: local_temperature must be > 0, got {}", fn, tau);

  auto W = detail::upcast(word_emb);   // [b, S, d]
  auto Pt = detail::upcast(patch_emb); // [b, P, d]
  const auto opt = W.options();
  const double lo = opts.weight_quantile_low, hi = opts.weight_quantile_high;
  // Upcast first: weights that come in bf16 (the model's attention under
  // autocast) are clipped and normalized in fp32, not rounded back to bf16.
  auto word_w = clip_and_normalize_weights(detail::upcast(word_weight), lo, hi, /*nonzero_only=*/true).to(opt);
  auto patch_w = patch_weight.defined()
                     ? clip_and_normalize_weights(detail::upcast(patch_weight), lo, hi, /*nonzero_only=*/false)
                           .to(opt)
                     : torch::full({b, P}, 1.0 / static_cast<double>(P), opt);
  const auto neg_inf = -std::numeric_limits<double>::infinity();
  // A sample with no non-pad word (not produced by the text side: [SEP] is a
  // word) would make the patch→word softmax NaN; it attends over all slots.
  auto pad = word_mask.to(W.device());
  pad = pad.logical_and(pad.all(1, /*keepdim=*/true).logical_not());
  const double inv_tau = 1.0 / tau;
  const double inv_b = 1.0 / static_cast<double>(b);

  // One word×patch logit matrix serves both directions: A = W·Pᵀ/τ2 [b, S, P]
  // (the reference computes P·Wᵀ again for patch→word).
  auto A = torch::bmm(W, Pt.transpose(1, 2)).mul_(inv_tau);

  // word → patch: every word attends over all patches (softmax over P).
  auto w2p = torch::softmax(A, 2);  // [b, S, P]
  auto word_out = F::normalize(torch::bmm(w2p, Pt), F::NormalizeFuncOptions().dim(-1));
  auto word_sim = torch::bmm(W, word_out.transpose(1, 2)).mul_(inv_tau);  // [b, S, S]
  // Quirk (a) off: pad words leave both denominators.
  auto word_ce = TokenCE::apply(word_sim, word_w, pad, !opts.quirk_pad_words_in_softmax, inv_b);

  // patch → word: every patch attends over the non-pad words (softmax over S).
  auto p2w = torch::softmax(A.masked_fill(pad.unsqueeze(2), neg_inf), 1);  // [b, S, P]
  torch::Tensor patch_out, patch_sim;                                       // [b, P, d], [b, P, P]
  if (opts.quirk_vit_patch_output_unnormalized && opts.patches_from_vit) {
    // Unnormalized output o_l = Σ_j α_jl w_j, so p_k·o_l/τ2 = Σ_j A_jk α_jl:
    // patch_sim = Aᵀ·α (P·S·P multiply-adds per sample instead of
    // P·S·d + P·P·d, and no o in the graph).
    patch_sim = torch::bmm(A.transpose(1, 2), p2w);
    if (trace != nullptr) patch_out = torch::bmm(p2w.transpose(1, 2), W).detach();
  } else {
    patch_out = F::normalize(torch::bmm(p2w.transpose(1, 2), W), F::NormalizeFuncOptions().dim(-1));
    patch_sim = torch::bmm(Pt, patch_out.transpose(1, 2)).mul_(inv_tau);
  }
  auto patch_ce = TokenCE::apply(patch_sim, patch_w, pad, /*mask_pads=*/false, inv_b);

  CtaResult r;
  r.loss_word_row = word_ce[0];
  r.loss_word_col = word_ce[1];
  r.loss_word = (r.loss_word_row + r.loss_word_col) * 0.5;
  r.loss_patch_row = patch_ce[0];
  r.loss_patch_col = patch_ce[1];
  r.loss_patch = (r.loss_patch_row + r.loss_patch_col) * 0.5;
  r.loss = r.loss_word + r.loss_patch;
  if (!opts.cta_sum_parts) r.loss = r.loss * 0.5;

  if (trace != nullptr) {
    trace->word_weights = word_w.detach();
    trace->patch_weights = patch_w.detach();
    trace->word_to_patch_attention = w2p.detach();
    trace->word_attention_output = word_out.detach();
    trace->word_sim = word_sim.detach();
    trace->patch_to_word_attention = p2w.detach().transpose(1, 2);
    trace->patch_attention_output = patch_out.detach();
    trace->patch_sim = patch_sim.detach();
    trace->ce_word_row = word_ce[2];
    trace->ce_word_col = word_ce[3];
    trace->ce_patch_row = patch_ce[2];
    trace->ce_patch_col = patch_ce[3];
  }
  return r;
}

}  // namespace mgca::objectives
