// The [runtime] table of a job: device, precision, threads, checks (no
// torch). visit_runtime_options() binds each job-file key to its field with
// its meaning and allowed range.
#pragma once

#include <cstdint>

#include "mgca/util/device_choice.h"
#include "mgca/util/option_types.h"

namespace mgca::train {

// Mixed precision of the forward. Auto: bf16 on a GPU, none on the CPU.
enum class Autocast { Auto, BFloat16, None };
inline constexpr util::NamedValue<Autocast> kAutocastNames[] = {
    {Autocast::Auto, "auto"}, {Autocast::BFloat16, "bf16"}, {Autocast::None, "none"}};
constexpr const auto& enum_names(Autocast) { return kAutocastNames; }

// Weights and activations (float64: numerical verification runs).
enum class ComputeDtype { Float32, Float64 };
inline constexpr util::NamedValue<ComputeDtype> kComputeDtypeNames[] = {{ComputeDtype::Float32, "float32"},
                                                                         {ComputeDtype::Float64, "float64"}};
constexpr const auto& enum_names(ComputeDtype) { return kComputeDtypeNames; }

struct RuntimeOptions {
  util::DeviceChoice device = util::DeviceChoice::Auto;  // auto: GPU by local rank when present
  Autocast autocast = Autocast::Auto;
  ComputeDtype dtype = ComputeDtype::Float32;  // float64: slow, no autocast
  int64_t threads = 0;            // intra-op threads per rank; 0 = cores on the host / ranks on the host
  bool deterministic = true;      // GPU: deterministic algorithms, cuDNN and cuBLAS workspace
  bool check_finite = true;       // stop with the step and loss part at a NaN/Inf loss
  // The same float32 gradients for any W at a given global batch: parameter
  // gradients summed in float64 (comm/exact_grad.h), the global objectives
  // replicated on every rank (objectives' `replicated`). Slower.
  bool batch_invariant = false;
};

// f(key, field&, meaning, util::Range) for every key of [runtime], in the resolved TOML's order.
template <typename Options, typename F>
void visit_runtime_options(Options& r, F&& f) {
  using util::Range;
  f("runtime.device", r.device, "auto: GPU by local rank when there is one", Range{});
  f("runtime.autocast", r.autocast, "mixed precision of the forward; auto: bf16 on GPU, none on CPU; bf16: on CPU too",
    Range{});
  f("runtime.dtype", r.dtype, "weights and activations; float64 is for numerical verification (slow, no autocast)",
    Range{});
  f("runtime.threads", r.threads, "intra-op threads per rank; 0 = $OMP_NUM_THREADS, else cores / ranks on the host",
    Range::at_least(0));
  f("runtime.deterministic", r.deterministic,
    "GPU: deterministic algorithms and cuDNN, CUBLAS_WORKSPACE_CONFIG=:4096:8 (bit-exact resume; CPU runs are "
    "deterministic for a given thread count either way)",
    Range{});
  f("runtime.check_finite", r.check_finite, "stop with the step and the loss part at a NaN/Inf", Range{});
  f("runtime.batch_invariant", r.batch_invariant,
    "the same gradients bit for bit (with high probability) for any number of ranks at a given global batch: "
    "float64 parameter-gradient sums, objectives replicated on every rank (slower; docs/contract.md); needs "
    "synchronized BatchNorm, global negatives and Sinkhorn, native gradient dtype and full precision "
    "(runtime.autocast = auto then means none on GPU too)",
    Range{});
}

}  // namespace mgca::train
