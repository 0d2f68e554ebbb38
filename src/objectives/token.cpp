// CTA: cross-attention token-wise alignment (SPEC §2.2), batched over samples
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

// Cross-entropy with target = own index, per row (over dim 2) and per
// column (over dim 1) of square similarity matrices [b, n, n]. The masked
// variants hold −inf at excluded entries; `sim` gives the diagonal.
torch::Tensor ce_rows(const torch::Tensor& masked, const torch::Tensor& sim) {
  return masked.logsumexp(2) - sim.diagonal(0, 1, 2);
}
torch::Tensor ce_cols(const torch::Tensor& masked, const torch::Tensor& sim) {
  return masked.logsumexp(1) - sim.diagonal(0, 1, 2);
}

}  // namespace

torch::Tensor clip_and_normalize_weights(const torch::Tensor& weights, double low, double high,
                                         bool nonzero_only) {
  detail::check_float(weights, "clip_and_normalize_weights", "weights", 2);
  MGCA_CHECK(0.0 <= low && low <= high && high <= 1.0,
             "clip_and_normalize_weights: quantiles must satisfy 0 <= low <= high <= 1, got {} and {}",
             low, high);
  torch::NoGradGuard no_grad;
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
  auto word_w = clip_and_normalize_weights(word_weight, lo, hi, /*nonzero_only=*/true).to(opt);
  auto patch_w = patch_weight.defined()
                     ? clip_and_normalize_weights(patch_weight, lo, hi, /*nonzero_only=*/false).to(opt)
                     : torch::full({b, P}, 1.0 / static_cast<double>(P), opt);
  const auto neg_inf = -std::numeric_limits<double>::infinity();
  auto pad = word_mask.to(W.device());

  // word → patch: every word attends over all patches.
  auto w2p = torch::softmax(torch::bmm(W, Pt.transpose(1, 2)) / tau, -1);  // [b, S, P]
  auto word_out = F::normalize(torch::bmm(w2p, Pt), F::NormalizeFuncOptions().dim(-1));
  auto word_sim = torch::bmm(W, word_out.transpose(1, 2)) / tau;  // [b, S, S]
  torch::Tensor ce_wr, ce_wc;
  if (opts.quirk_pad_words_in_softmax) {
    ce_wr = ce_rows(word_sim, word_sim);
    ce_wc = ce_cols(word_sim, word_sim);
  } else {
    // Pad words leave both denominators; each keeps its own diagonal entry
    // (weight 0) so that no row is all −inf.
    auto eye = torch::eye(S, pad.options());
    auto other_pad = pad.unsqueeze(1).logical_and(eye.logical_not().unsqueeze(0));  // [b, j, l]: l pad, l≠j
    ce_wr = ce_rows(word_sim.masked_fill(other_pad, neg_inf), word_sim);
    ce_wc = ce_cols(word_sim.masked_fill(other_pad.transpose(1, 2), neg_inf), word_sim);
  }

  // patch → word: attention over the non-pad words.
  auto p2w_logits = torch::bmm(Pt, W.transpose(1, 2)).masked_fill(pad.unsqueeze(1), neg_inf);
  auto p2w = torch::softmax(p2w_logits / tau, -1);  // [b, P, S]
  auto patch_out = torch::bmm(p2w, W);               // [b, P, d]
  if (!(opts.quirk_vit_patch_output_unnormalized && opts.patches_from_vit)) {
    patch_out = F::normalize(patch_out, F::NormalizeFuncOptions().dim(-1));
  }
  auto patch_sim = torch::bmm(Pt, patch_out.transpose(1, 2)) / tau;  // [b, P, P]
  auto ce_pr = ce_rows(patch_sim, patch_sim);
  auto ce_pc = ce_cols(patch_sim, patch_sim);

  CtaResult r;
  const double inv_b = 1.0 / static_cast<double>(b);
  r.loss_word_row = (ce_wr * word_w).sum() * inv_b;
  r.loss_word_col = (ce_wc * word_w).sum() * inv_b;
  r.loss_word = (r.loss_word_row + r.loss_word_col) * 0.5;
  r.loss_patch_row = (ce_pr * patch_w).sum() * inv_b;
  r.loss_patch_col = (ce_pc * patch_w).sum() * inv_b;
  r.loss_patch = (r.loss_patch_row + r.loss_patch_col) * 0.5;
  r.loss = r.loss_word + r.loss_patch;
  if (!opts.cta_sum_parts) r.loss = r.loss * 0.5;

  if (trace != nullptr) {
    trace->word_weights = word_w.detach();
    trace->patch_weights = patch_w.detach();
    trace->word_to_patch_attention = w2p.detach();
    trace->word_attention_output = word_out.detach();
    trace->word_sim = word_sim.detach();
    trace->patch_to_word_attention = p2w.detach();
    trace->patch_attention_output = patch_out.detach();
    trace->patch_sim = patch_sim.detach();
    trace->ce_word_row = ce_wr.detach();
    trace->ce_word_col = ce_wc.detach();
    trace->ce_patch_row = ce_pr.detach();
    trace->ce_patch_col = ce_pc.detach();
  }
  return r;
}

}  // namespace mgca::objectives
