// Settings of the MGCA and ConVIRT objectives (docs/contract.md §2). No torch here: the
// trainer's config holds an ObjectiveOptions as its [objectives] table.
// Defaults are the official MGCA run's (variant "official", λ = 1, 1, 1) and
// ConVIRT's paper values; visit_objective_options() binds each job-file key
// to its field with its meaning and allowed range, the one list that the job
// parser and validate() both walk.
#pragma once

#include <cstdint>
#include <string>

#include "mgca/util/option_types.h"

namespace mgca::objectives {

// "official": reproduce the reference implementation (HKU-MedAI/MGCA @ 680fe4a)
// so that its published hyper-parameters carry over. "paper": the method as
// the paper writes it. A variant is a preset of the five booleans below.
enum class Variant { Official, Paper };
inline constexpr util::NamedValue<Variant> kVariantNames[] = {{Variant::Official, "official"},
                                                               {Variant::Paper, "paper"}};
constexpr const auto& enum_names(Variant) { return kVariantNames; }

// What a rank's ITA/ConVIRT negatives and Sinkhorn normalization range over:
// the global batch of the step (all W ranks' rows, the W-independent
// default) or the rank's own b rows, as the official code computes them on
// each GPU (its ITA has no gather and its distributed Sinkhorn is never
// selected).
enum class Scope { Global, Local };
inline constexpr util::NamedValue<Scope> kScopeNames[] = {{Scope::Global, "global"}, {Scope::Local, "local"}};
constexpr const auto& enum_names(Scope) { return kScopeNames; }

// "official" | "paper"; anything else is an error naming the value.
Variant parse_variant(const std::string& name);
const char* variant_name(Variant variant);

struct ObjectiveOptions {
  // --- variant and the booleans it sets (official: all true, paper: all false)
  Variant variant = Variant::Official;
  // Quirk (a): pad words keep weight 0 but stay in both softmax denominators
  // of the CTA word losses (false: pad words are masked out of them).
  bool quirk_pad_words_in_softmax = true;
  // Quirk (b): the [CLS] attention over tokens 1..L-1 is paired with tokens
  // 0..L-2 before subword→word aggregation. The objectives do not read it:
  // it lives here so that `variant` sets all three quirks in one place, and
  // the trainer passes it on as model::WordAggregationOptions::official_pairing.
  bool quirk_cls_attention_off_by_one = true;
  // Quirk (c): the CTA patch→word attention output is L2-normalized only for
  // ResNet patches, not for ViT (false: always normalized).
  bool quirk_vit_patch_output_unnormalized = true;
  // L_ITA = ℓ_i2t + ℓ_t2i (official) or their mean (paper).
  bool ita_sum_directions = true;
  // L_CTA = L_word + L_patch (official) or their mean (paper).
  bool cta_sum_parts = true;

  // --- what the per-rank losses see (docs/contract.md §2.7). Local: rank r's
  // losses are the official code's on its b rows, so they depend on b.
  Scope negatives = Scope::Global;  // ITA and ConVIRT columns
  Scope sinkhorn = Scope::Global;   // the Sinkhorn codes' prototype sums

  // --- MGCA constants (docs/contract.md §2.1–2.4)
  double ita_temperature = 0.07;    // τ1
  double local_temperature = 0.1;   // τ2 (CTA)
  double proto_temperature = 0.2;   // τ3 (CPA softmax)
  double sinkhorn_epsilon = 0.05;   // ε
  int64_t sinkhorn_iterations = 3;
  int64_t num_prototypes = 500;     // K; prototype_alignment checks the tensor against it
  // Epochs during which the prototype gradient is dropped. Applied by the
  // trainer (it clears the gradient after backward), not by the objectives.
  int64_t freeze_prototypes_epochs = 1;
  // CTA weight clipping: each sample's word (non-zero entries) and patch
  // (all entries) weights are clipped to these linear quantiles.
  double weight_quantile_low = 0.1;
  double weight_quantile_high = 0.9;
  double lambda_ita = 1.0;  // λ1
  double lambda_cta = 1.0;  // λ2
  double lambda_cpa = 1.0;  // λ3
  // The image backbone that made the patches: ViT (true) or ResNet (false).
  // Decides quirk (c). Not a job-file key: the trainer sets it (and
  // num_prototypes) from the model config.
  bool patches_from_vit = true;
  // runtime.batch_invariant (not a job-file key; the trainer sets it): every
  // rank computes ITA, ConVIRT and CPA on the gathered global batch exactly
  // as one rank would (comm::all_gather_replicated, Sinkhorn over all rows,
  // the prototypes' gradient counted on rank 0 alone) and back-propagates
  // its own rows; CTA, per sample, stays local with its gradient scaled by
  // 1/W. The parameter gradients are then summed over ranks, not averaged.
  // The reported loss values keep their meaning (mean over ranks = global).
  // Needs negatives and sinkhorn global.
  bool replicated = false;

  // ITA and ConVIRT: columns per tile of the memory-flat loss. A global batch
  // N above it runs the tiled loss (online log-sum-exp over column tiles,
  // recomputed in backward: one b × ita_tile float32 tile instead of b × N
  // logits per direction); N <= ita_tile keeps the one-matrix loss, which
  // does one matmul less. Same loss and gradients either way.
  int64_t ita_tile = 8192;

  // --- ConVIRT (docs/contract.md §2.5)
  double convirt_lambda = 0.75;      // weight of image→text; text→image gets 1 - λ
  double convirt_temperature = 0.1;  // τ

  // Sets `variant` and the five booleans it controls.
  void set_variant(Variant v);
  static ObjectiveOptions official();
  static ObjectiveOptions paper();
  // The ranges of visit_objective_options(), 0 ≤ low ≤ high ≤ 1 and K ≥ 1;
  // the error names the key.
  void validate() const;
};

// Every job-file key of the objectives, in the order of the resolved TOML:
// f(key, field&, meaning, util::Range). `Options` is ObjectiveOptions, const
// or not. The variant's booleans come right after the constants they follow.
template <typename Options, typename F>
void visit_objective_options(Options& o, F&& f) {
  using util::Range;
  f("objectives.variant", o.variant, "the official code's choices or the paper's (docs/contract.md §2); sets the five "
    "booleans below unless they are given", Range{});
  f("objectives.negatives", o.negatives,
    "ITA/ConVIRT negatives: the step's global batch, or each rank's own b rows as the official code on each GPU "
    "(docs/contract.md §2.7)", Range{});
  f("objectives.sinkhorn", o.sinkhorn,
    "Sinkhorn codes normalized over the step's global batch, or over each rank's own b rows as the official code "
    "(docs/contract.md §2.7)", Range{});
  f("objectives.lambda_ita", o.lambda_ita, "λ1, weight of the instance-wise loss", Range::at_least(0).and_finite());
  f("objectives.lambda_cta", o.lambda_cta, "λ2, weight of the token-wise loss", Range::at_least(0).and_finite());
  f("objectives.lambda_cpa", o.lambda_cpa, "λ3, weight of the prototype loss", Range::at_least(0).and_finite());
  f("objectives.ita_temperature", o.ita_temperature, "τ1 (ITA)", Range::above(0).and_finite());
  f("objectives.local_temperature", o.local_temperature, "τ2 (CTA)", Range::above(0).and_finite());
  f("objectives.proto_temperature", o.proto_temperature, "τ3 (CPA softmax)", Range::above(0).and_finite());
  f("objectives.sinkhorn_epsilon", o.sinkhorn_epsilon, "ε of the Sinkhorn codes", Range::above(0).and_finite());
  f("objectives.sinkhorn_iterations", o.sinkhorn_iterations, "Sinkhorn-Knopp iterations", Range::at_least(1));
  f("objectives.freeze_prototypes_epochs", o.freeze_prototypes_epochs,
    "the prototype gradient is dropped during the first n epochs", Range::at_least(0));
  f("objectives.weight_quantile_low", o.weight_quantile_low, "CTA weights are clipped to this quantile …",
    Range::closed(0, 1));
  f("objectives.weight_quantile_high", o.weight_quantile_high, "… and this one", Range::closed(0, 1));
  f("objectives.quirk_pad_words_in_softmax", o.quirk_pad_words_in_softmax,
    "docs/contract.md §2.2 (a): pad words stay in the word-loss softmax", Range{});
  f("objectives.quirk_cls_attention_off_by_one", o.quirk_cls_attention_off_by_one,
    "docs/contract.md §2.2 (b): [CLS] attention paired off by one with the tokens", Range{});
  f("objectives.quirk_vit_patch_output_unnormalized", o.quirk_vit_patch_output_unnormalized,
    "docs/contract.md §2.2 (c): patch→word output not normalized for ViT", Range{});
  f("objectives.ita_sum_directions", o.ita_sum_directions, "L_ITA sums both directions (false: their mean)",
    Range{});
  f("objectives.cta_sum_parts", o.cta_sum_parts, "L_CTA = L_word + L_patch (false: their mean)", Range{});
  f("objectives.convirt_lambda", o.convirt_lambda, "ConVIRT: λ, weight of image→text", Range::closed(0, 1));
  f("objectives.convirt_temperature", o.convirt_temperature, "ConVIRT: τ", Range::above(0).and_finite());
  f("objectives.ita_tile", o.ita_tile,
    "ITA/ConVIRT: a global batch N above it runs the memory-flat loss in tiles of this many columns "
    "(same loss and gradients; the logits no longer take memory in proportion to N)", Range::at_least(1));
}

// The rule across two keys: weight_quantile_low <= weight_quantile_high.
// "" when it holds, else what is wrong (the key is objectives.weight_quantile_low).
std::string quantile_order_problem(const ObjectiveOptions& o);

}  // namespace mgca::objectives
