// The MGCA objectives (ITA, CTA, CPA with distributed Sinkhorn) and ConVIRT's
// loss: pure functions of tensors and a communicator (docs/contract.md §2).
//
// Notation: W ranks, b rows (samples) per rank, N = W·b the global batch, d the
// embedding width, S words, P patches, K prototypes. Rank r holds the global
// rows r·b … r·b+b-1. Embeddings are L2-normalized along the last dim by the
// caller (the model's heads do it); the functions do not normalize them.
// Float32, float64, and bfloat16/float16 inputs are accepted; reduced-precision
// inputs are evaluated in float32 (bfloat16 embeddings may meet float32
// prototypes: tensors must agree on this compute type, not on their dtype),
// and Sinkhorn always runs in at least float32. Every function runs with
// autocast off whatever the caller's autocast state (the trainer's bf16
// forward): matmuls, softmaxes, log-softmaxes, cross-entropies and Sinkhorn
// run in the compute type, and the custom autograd functions save tensors of
// that type for backward. Gradients come back in each input's own dtype.
//
// Scaling convention (what holds across ranks). Every loss a rank returns is
// the mean over its own b rows: L_r = (1/b) Σ_{i ∈ rank r} ℓ_i, where ℓ_i may
// depend on all N rows through gathered columns (ITA, ConVIRT) or on all N
// rows' Sinkhorn codes (CPA). The single-process loss over the global batch
// is L = (1/N) Σ_i ℓ_i, hence
//   (1) losses: the mean over ranks of L_r equals L (every part too, and the
//       accuracies, which are means over local rows as well);
//   (2) the gradient autograd gives rank r for its own input rows x_r (the
//       local-row path plus the reduce-scattered sum of every rank's column
//       path) is  ∂(Σ_r' L_r')/∂x_r = W · ∂L/∂x_r  — W times the
//       single-process gradient of those rows (a b-row local mean is N/b = W
//       times the weight of a row in the N-row mean);
//   (3) so for any tensor every rank holds (the prototypes directly, every
//       model parameter through the rows it produced), the mean over ranks of
//       the per-rank gradients equals ∂L/∂θ: with gradients averaged over ranks
//       (DDP-style), W ranks × b rows step exactly like one rank × N rows.
// Tests (tests/mpi/objectives) check (1)–(3) and the Sinkhorn codes for
// W = 1, 2, 4 against Communicator::single() on the global batch.
//
// The official run's per-rank losses (opts.negatives / opts.sinkhorn =
// Scope::Local, docs/contract.md §2.7): ITA/ConVIRT then use only the rank's
// b rows as columns, and/or Sinkhorn normalizes over the rank's b rows, with
// no communication for that part. Rank r's losses and the gradient w.r.t. its
// own rows are then the single-process ones of its b rows (the official code
// run on them): (1) becomes "the mean over ranks of the official per-GPU
// losses" and (3) "the mean over ranks of the per-GPU gradients" (DDP), both
// dependent on b. Tested at W = 1, 2, 4 against the official loss code on
// each rank's part of the golden batches.
//
// Collectives: instance_alignment, convirt_loss, sinkhorn, prototype_alignment
// and mgca_objective are collective calls over `comm` (every rank calls them
// in the same order with the same b, d, K, dtype and options); token_alignment
// is local, and so are the parts set to Scope::Local.
// A communicator of size 1 (Communicator::single()) gives the single-process
// result.
#pragma once

#include <torch/types.h>

#include <memory>

#include "mgca/comm/communicator.h"
#include "mgca/objectives/options.h"

namespace mgca::objectives {

// ---------------------------------------------------------------- ITA / ConVIRT

// All tensors are 0-dim. Losses carry the graph; accuracies do not.
struct ItaResult {
  torch::Tensor loss;      // official: loss_i2t + loss_t2i; paper: their mean
  torch::Tensor loss_i2t;  // mean over local rows i of CE(z_i,:, r·b+i), z = v_i·T_allᵀ/τ1
  torch::Tensor loss_t2i;  // the same with reports as rows and gathered images as columns
  // Image→report and report→image top-k retrieval accuracy in % over the
  // local rows against all N columns (float32; NaN when N < k).
  torch::Tensor acc1, acc5;
  torch::Tensor acc1_t2i, acc5_t2i;
};

// img, txt: [b, d], the same dtype and shape on every rank. Local rows ×
// gathered columns (b×N logits per direction, never N×N; above N =
// opts.ita_tile in column tiles of that width, same results); the gather keeps
// the graph (comm::all_gather_with_grad: one gather of [img | txt] forward,
// one reduce-scatter backward).
ItaResult instance_alignment(const torch::Tensor& img, const torch::Tensor& txt,
                             const ObjectiveOptions& opts,
                             const std::shared_ptr<comm::Communicator>& comm);

// ConVIRT (docs/contract.md §2.5): loss = λ·loss_i2t + (1-λ)·loss_t2i at τ = convirt_temperature,
// global negatives exactly as instance_alignment (same result fields).
ItaResult convirt_loss(const torch::Tensor& img, const torch::Tensor& txt,
                       const ObjectiveOptions& opts,
                       const std::shared_ptr<comm::Communicator>& comm);

// ---------------------------------------------------------------- CTA

struct CtaResult {
  torch::Tensor loss;            // official: loss_word + loss_patch; paper: their mean
  torch::Tensor loss_word;       // (loss_word_row + loss_word_col) / 2
  torch::Tensor loss_word_row;   // Σ_i Σ_j ω_ij CE(s_ij,:, j) / b       (reference loss_word_1)
  torch::Tensor loss_word_col;   // Σ_i Σ_j ω_ij CE(s_i,:,j, j) / b      (reference loss_word_2)
  torch::Tensor loss_patch;      // the same for patch→word
  torch::Tensor loss_patch_row;
  torch::Tensor loss_patch_col;
};

// Intermediates for tests and inspection (detached copies), filled when a
// trace is passed.
struct CtaTrace {
  torch::Tensor word_weights;             // [b, S] clipped and normalized ω (rows sum to 1)
  torch::Tensor patch_weights;            // [b, P]
  torch::Tensor word_to_patch_attention;  // [b, S, P] softmax over patches
  torch::Tensor word_attention_output;    // [b, S, d] normalized
  torch::Tensor word_sim;                 // [b, S, S] w_j·o_l/τ2
  torch::Tensor patch_to_word_attention;  // [b, P, S] softmax over non-pad words
  torch::Tensor patch_attention_output;   // [b, P, d] (not normalized for ViT under quirk (c))
  torch::Tensor patch_sim;                // [b, P, P]
  torch::Tensor ce_word_row, ce_word_col;   // [b, S] per-word cross-entropies
  torch::Tensor ce_patch_row, ce_patch_col; // [b, P]
};

// Local (no communication). word_emb [b, S, d] and patch_emb [b, P, d]
// normalized, the same dtype; word_weight [b, S] raw non-negative word weights
// (0 at pad words), no grad; word_mask [b, S] bool, true at pad words (a
// sample with no non-pad word attends over all its slots instead of giving
// NaN); patch_weight [b, P] raw
// non-negative (ViT: [CLS]→patch attention of the last block, mean over heads)
// or an undefined tensor for uniform 1/P (ResNet). Weights are clipped to
// each sample's [weight_quantile_low, weight_quantile_high] linear quantiles
// — of the non-zero entries for words (zeros stay 0), of all P entries for
// patches — and divided by their sum (a sample whose weights are all zero
// contributes 0).
CtaResult token_alignment(const torch::Tensor& word_emb, const torch::Tensor& word_weight,
                          const torch::Tensor& word_mask, const torch::Tensor& patch_emb,
                          const torch::Tensor& patch_weight, const ObjectiveOptions& opts,
                          CtaTrace* trace = nullptr);

// The weight clipping of token_alignment on its own: weights [b, n] (any
// float dtype, no grad) → clipped, normalized weights of the same dtype.
// nonzero_only: quantiles over each row's non-zero entries and zeros stay 0
// (words); otherwise over all entries (patches).
torch::Tensor clip_and_normalize_weights(const torch::Tensor& weights, double low, double high,
                                         bool nonzero_only);

// ---------------------------------------------------------------- Sinkhorn / CPA

// SwAV's Sinkhorn-Knopp over the global batch. scores [b, K] (or [G, b, K]:
// G independent problems solved with the same collectives), any float dtype,
// no grad. Computed in float32 (float64 for float64 input) from
// Q = exp(s/ε)ᵀ with each prototype row's global max subtracted first; then
// `iterations` times: rows (prototypes) divided by their global sums
// (all-reduce), columns (samples) by their local sums. The constants 1/K and
// 1/N of SwAV's form are uniform scales that the next normalization cancels,
// so they are left out; the result does not depend on every rank having the
// same b. Returns the codes [b, K] (or [G, b, K]), rows summing to 1, float32
// (float64 for float64 input); rank r's rows equal rows r·b… of the
// single-process result over the global batch. One all-reduce (max) of G·K
// values plus `iterations` all-reduces (sum) of G·K values.
torch::Tensor sinkhorn(const torch::Tensor& scores, double epsilon, int iterations,
                       const std::shared_ptr<comm::Communicator>& comm);

struct CpaResult {
  torch::Tensor loss;        // (loss_i2t + loss_t2i) / 2
  torch::Tensor loss_i2t;    // -mean_i Σ_k q_img,ik log p_report,ik   (reference loss_i2t_proto)
  torch::Tensor loss_t2i;    // -mean_i Σ_k q_report,ik log p_img,ik
  // [b, K] Sinkhorn codes of the image scores (no grad), float32 (float64 for
  // float64 input) whatever the inputs' dtype.
  torch::Tensor codes_img;
  torch::Tensor codes_report;
};

// img, txt: [b, d] normalized; prototypes [K, d], rows normalized by the
// caller (normalize_prototypes_ below, the trainer's step before forward).
// The gradient reaches img, txt and the prototypes as given (the reference's
// grad w.r.t. the normalized weights); the codes carry none. Collective: one
// Sinkhorn call for both modalities.
CpaResult prototype_alignment(const torch::Tensor& img, const torch::Tensor& txt,
                              const torch::Tensor& prototypes, const ObjectiveOptions& opts,
                              const std::shared_ptr<comm::Communicator>& comm);

// In place, without grad: each row of the prototype weight [K, d] divided by
// its L2 norm (docs/contract.md §2.3: every step, before the forward). The trainer calls
// it; since every rank holds the same weights, they stay equal.
void normalize_prototypes_(torch::Tensor& weight);

// ---------------------------------------------------------------- MGCA total

struct MgcaObjectiveInputs {
  torch::Tensor img_emb;       // [b, d]     normalized
  torch::Tensor report_emb;    // [b, d]     normalized
  torch::Tensor patch_emb;     // [b, P, d]  normalized
  torch::Tensor word_emb;      // [b, S, d]  normalized
  torch::Tensor word_weight;   // [b, S]     raw
  torch::Tensor word_mask;     // [b, S]     bool, true at pad words
  torch::Tensor patch_weight;  // [b, P]     raw, or undefined for uniform
  torch::Tensor prototypes;    // [K, d]     normalized rows
};

struct MgcaObjectiveResult {
  torch::Tensor loss;  // λ1·ita.loss + λ2·cta.loss + λ3·cpa.loss
  ItaResult ita;
  CtaResult cta;
  CpaResult cpa;
};

MgcaObjectiveResult mgca_objective(const MgcaObjectiveInputs& in, const ObjectiveOptions& opts,
                                   const std::shared_ptr<comm::Communicator>& comm,
                                   CtaTrace* trace = nullptr);

}  // namespace mgca::objectives
