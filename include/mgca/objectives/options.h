// Settings of the MGCA and ConVIRT objectives (docs/contract.md §2). No torch here: the
// trainer's config includes this header. Defaults are the official MGCA run's
// (variant "official", λ = 1, 1, 1) and ConVIRT's paper values; each field is
// a config key of the same name under [objective] in a job file.
#pragma once

#include <cstdint>
#include <string>

namespace mgca::objectives {

// "official": reproduce the reference implementation (HKU-MedAI/MGCA @ 680fe4a)
// so that its published hyper-parameters carry over. "paper": the method as
// the paper writes it. A variant is a preset of the five booleans below.
enum class Variant { Official, Paper };

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

  // --- MGCA constants (docs/contract.md §2.1–2.4)
  double ita_temperature = 0.07;    // τ1
  double local_temperature = 0.1;   // τ2 (CTA)
  double proto_temperature = 0.2;   // τ3 (CPA softmax)
  double sinkhorn_epsilon = 0.05;   // ε
  int sinkhorn_iterations = 3;
  int64_t num_prototypes = 500;     // K; prototype_alignment checks the tensor against it
  // Epochs during which the prototype gradient is dropped. Applied by the
  // trainer (it clears the gradient after backward), not by the objectives.
  int freeze_prototypes_epochs = 1;
  // CTA weight clipping: each sample's word (non-zero entries) and patch
  // (all entries) weights are clipped to these linear quantiles.
  double weight_quantile_low = 0.1;
  double weight_quantile_high = 0.9;
  double lambda_ita = 1.0;  // λ1
  double lambda_cta = 1.0;  // λ2
  double lambda_cpa = 1.0;  // λ3
  // The image backbone that made the patches: ViT (true) or ResNet (false).
  // Decides quirk (c). Set by the trainer from the model config.
  bool patches_from_vit = true;

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
  // Range checks (temperatures and ε > 0, iterations ≥ 1, 0 ≤ low ≤ high ≤ 1,
  // K ≥ 1, ita_tile ≥ 1, λ finite, 0 ≤ convirt_lambda ≤ 1); the error names the key.
  void validate() const;
};

}  // namespace mgca::objectives
