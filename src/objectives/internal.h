// Helpers shared by the objective sources (internal).
#pragma once

#include <torch/torch.h>

#include <string>

#include "mgca/util/error.h"

namespace mgca::objectives::detail {

inline std::string shape(const torch::Tensor& t) {
  return t.defined() ? c10::str(t.sizes()) : std::string("<undefined>");
}

inline bool reduced_precision(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 || t.scalar_type() == torch::kHalf;
}

// Reduced-precision tensors become float32 (the graph is kept); float32 and
// float64 are returned as they are.
inline torch::Tensor upcast(const torch::Tensor& t) {
  return reduced_precision(t) ? t.to(torch::kFloat) : t;
}

// `name` must be a defined floating tensor of `dims` dimensions.
inline void check_float(const torch::Tensor& t, const char* fn, const char* name, int64_t dims) {
  MGCA_CHECK(t.defined(), "{}: tensor '{}' is undefined", fn, name);
  MGCA_CHECK(t.dim() == dims, "{}: tensor '{}' must have {} dimensions, got shape {}", fn, name, dims,
             shape(t));
  MGCA_CHECK(t.is_floating_point(), "{}: tensor '{}' must be floating point, got {}", fn, name,
             c10::toString(t.scalar_type()));
}

// a and b: same dtype and device.
inline void check_same_kind(const torch::Tensor& a, const char* name_a, const torch::Tensor& b,
                            const char* name_b, const char* fn) {
  MGCA_CHECK(a.scalar_type() == b.scalar_type(), "{}: '{}' is {} but '{}' is {}", fn, name_a,
             c10::toString(a.scalar_type()), name_b, c10::toString(b.scalar_type()));
  MGCA_CHECK(a.device() == b.device(), "{}: '{}' is on {} but '{}' is on {}", fn, name_a,
             a.device().str(), name_b, b.device().str());
}

}  // namespace mgca::objectives::detail
