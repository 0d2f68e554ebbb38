#include "mgca/objectives/options.h"

#include <cmath>

#include "mgca/util/error.h"

namespace mgca::objectives {

Variant parse_variant(const std::string& name) {
  if (name == "official") return Variant::Official;
  if (name == "paper") return Variant::Paper;
  MGCA_FAIL("objective.variant: unknown value '{}' (expected \"official\" or \"paper\")", name);
}

const char* variant_name(Variant variant) {
  return variant == Variant::Official ? "official" : "paper";
}

void ObjectiveOptions::set_variant(Variant v) {
  variant = v;
  const bool official = v == Variant::Official;
  quirk_pad_words_in_softmax = official;
  quirk_cls_attention_off_by_one = official;
  quirk_vit_patch_output_unnormalized = official;
  ita_sum_directions = official;
  cta_sum_parts = official;
}

ObjectiveOptions ObjectiveOptions::official() {
  ObjectiveOptions o;
  o.set_variant(Variant::Official);
  return o;
}

ObjectiveOptions ObjectiveOptions::paper() {
  ObjectiveOptions o;
  o.set_variant(Variant::Paper);
  return o;
}

void ObjectiveOptions::validate() const {
  auto positive = [](double v, const char* key) {
    MGCA_CHECK(std::isfinite(v) && v > 0.0, "objective.{} must be a finite number > 0, got {}", key, v);
  };
  positive(ita_temperature, "ita_temperature");
  positive(local_temperature, "local_temperature");
  positive(proto_temperature, "proto_temperature");
  positive(sinkhorn_epsilon, "sinkhorn_epsilon");
  positive(convirt_temperature, "convirt_temperature");
  MGCA_CHECK(sinkhorn_iterations >= 1, "objective.sinkhorn_iterations must be >= 1, got {}",
             sinkhorn_iterations);
  MGCA_CHECK(num_prototypes >= 1, "objective.num_prototypes must be >= 1, got {}", num_prototypes);
  MGCA_CHECK(ita_tile >= 1, "objective.ita_tile must be >= 1, got {}", ita_tile);
  MGCA_CHECK(freeze_prototypes_epochs >= 0, "objective.freeze_prototypes_epochs must be >= 0, got {}",
             freeze_prototypes_epochs);
  MGCA_CHECK(weight_quantile_low >= 0.0 && weight_quantile_low <= weight_quantile_high &&
                 weight_quantile_high <= 1.0,
             "objective.weight_quantile_low/high must satisfy 0 <= low <= high <= 1, got {} and {}",
             weight_quantile_low, weight_quantile_high);
  MGCA_CHECK(std::isfinite(lambda_ita) && std::isfinite(lambda_cta) && std::isfinite(lambda_cpa),
             "objective.lambda_ita/cta/cpa must be finite, got {}, {}, {}", lambda_ita, lambda_cta,
             lambda_cpa);
  MGCA_CHECK(convirt_lambda >= 0.0 && convirt_lambda <= 1.0,
             "objective.convirt_lambda must lie in [0, 1], got {}", convirt_lambda);
}

}  // namespace mgca::objectives
