// Helpers shared by the objective sources (internal).
#pragma once

#include <torch/torch.h>

#include <string>

#include "mgca/util/error.h"
#include "mgca/util/torch_compat.h"

#include "mgca/objectives/options.h"

namespace mgca::objectives::detail {

inline std::string shape(const torch::Tensor& t) {
  return t.defined() ? c10::str(t.sizes()) : std::string("<undefined>");
}

inline bool reduced_precision(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 || t.scalar_type() == torch::kHalf;
}

// The dtype a tensor is evaluated in: float32 for bfloat16/float16, else its own.
inline torch::ScalarType compute_type(const torch::Tensor& t) {
  return reduced_precision(t) ? torch::kFloat : t.scalar_type();
}

// Reduced-precision tensors become float32 (the graph is kept); float32 and
// float64 are returned as they are.
inline torch::Tensor upcast(const torch::Tensor& t) {
  return reduced_precision(t) ? t.to(torch::kFloat) : t;
}

// Every public objective runs under this guard: whatever autocast state the
// caller (the trainer's bf16 forward) set, the objectives' matmuls, softmaxes,
// cross-entropies and Sinkhorn run in the compute type of their inputs, and
// their custom autograd functions save float32/float64 tensors for backward.
using FullPrecision = compat::AutocastOffGuard;

// `name` must be a defined floating tensor of `dims` dimensions.
inline void check_float(const torch::Tensor& t, const char* fn, const char* name, int64_t dims) {
  MGCA_CHECK(t.defined(), "{}: tensor '{}' is undefined", fn, name);
  MGCA_CHECK(t.dim() == dims, "{}: tensor '{}' must have {} dimensions, got shape {}", fn, name, dims,
             shape(t));
  MGCA_CHECK(t.is_floating_point(), "{}: tensor '{}' must be floating point, got {}", fn, name,
             c10::toString(t.scalar_type()));
}

// a and b: the same compute type (so bfloat16 embeddings from an autocast
// forward meet float32 prototypes) and device.
inline void check_same_kind(const torch::Tensor& a, const char* name_a, const torch::Tensor& b,
                            const char* name_b, const char* fn) {
  MGCA_CHECK(compute_type(a) == compute_type(b), "{}: '{}' is {} but '{}' is {}", fn, name_a,
             c10::toString(a.scalar_type()), name_b, c10::toString(b.scalar_type()));
  MGCA_CHECK(a.device() == b.device(), "{}: '{}' is on {} but '{}' is on {}", fn, name_a,
             a.device().str(), name_b, b.device().str());
}

// The options with `replicated` off: what the replicated call runs on the
// gathered rows with a one-rank communicator.
inline ObjectiveOptions unreplicated(ObjectiveOptions o) {
  o.replicated = false;
  return o;
}

}  // namespace mgca::objectives::detail
