#include "mgca/objectives/options.h"

#include <type_traits>

#include "mgca/util/error.h"

namespace mgca::objectives {

Variant parse_variant(const std::string& name) { return util::parse_enum<Variant>(name, "objectives.variant"); }

const char* variant_name(Variant variant) { return util::enum_name(variant); }

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

std::string quantile_order_problem(const ObjectiveOptions& o) {
  if (o.weight_quantile_low <= o.weight_quantile_high) return "";
  return fmt::format("need low ({}) <= objectives.weight_quantile_high ({})", o.weight_quantile_low,
                     o.weight_quantile_high);
}

void ObjectiveOptions::validate() const {
  visit_objective_options(*this, [](const char* key, const auto& value, const char*, const util::Range& range) {
    if constexpr (std::is_arithmetic_v<std::decay_t<decltype(value)>>) {
      const std::string problem = range.problem(value);
      MGCA_CHECK(problem.empty(), "{}: {}", key, problem);
    }
  });
  const std::string order = quantile_order_problem(*this);
  MGCA_CHECK(order.empty(), "objectives.weight_quantile_low: {}", order);
  MGCA_CHECK(num_prototypes >= 1, "objectives.num_prototypes (model.num_prototypes) must be >= 1, got {}",
             num_prototypes);
  MGCA_CHECK(!replicated || (negatives == Scope::Global && sinkhorn == Scope::Global),
             "runtime.batch_invariant needs objectives.negatives = global and objectives.sinkhorn = global");
}

}  // namespace mgca::objectives
