// Batch-invariant parameter gradients (runtime.batch_invariant): the same
// float32 gradients, bit for bit with high probability, whatever way the
// global batch is split over ranks.
//
// Per-sample math is row-independent in float32 (the same bits for a row
// whatever the batch around it); what depends on the split are the sums over
// samples that form a parameter's gradient (each rank's GEMM over its b
// rows, then the float32 all-reduce). In this mode every such sum is taken
// in float64 and rounded to float32 once, after the all-reduce:
//  - GradShadows gives every trainable parameter a float64 "shadow" leaf;
//  - exact_op(fn, inputs, params) runs fn in float64 and rounds its output
//    to float32 (kernels whose blocking depends on the batch size give
//    other bits for a row otherwise); backward recomputes fn in float64 and
//    differentiates it there: the parameters' float64 gradients go to their
//    shadows, the inputs' come back rounded to float32;
//  - the gradient sync sums the shadows over ranks in float64
//    (GradSyncOptions::sum) and write_gradients() rounds them into .grad.
// Cost: each wrapped op runs in float64, forward twice.
#pragma once

#include <torch/types.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "mgca/comm/communicator.h"

namespace mgca::comm {

class GradShadows {
 public:
  using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

  // A float64 leaf of the same shape for every floating parameter with
  // requires_grad (frozen ones get none; a tensor listed twice, one).
  explicit GradShadows(const NamedTensors& parameters);
  GradShadows(const GradShadows&) = delete;
  GradShadows& operator=(const GradShadows&) = delete;

  // The shadows under their parameters' names (what GradSync reduces).
  const NamedTensors& shadows() const { return shadows_; }
  // The shadow of `parameter`, or an undefined tensor.
  torch::Tensor shadow_of(const torch::Tensor& parameter) const;
  // Each parameter's .grad = its shadow's .grad rounded once to the
  // parameter's dtype (a shadow without a gradient leaves .grad undefined).
  // Call after GradSync::finalize() (or after backward at W = 1).
  void write_gradients();
  // Drops the shadows' gradients (with the optimizer's zero_grad).
  void zero_grad();

  // While a Scope lives, exact_op and replicated_parameter on this thread
  // route gradients to these shadows.
  class Scope {
   public:
    explicit Scope(const GradShadows* shadows);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    const GradShadows* previous_;
  };

 private:
  std::vector<torch::Tensor> parameters_;
  NamedTensors shadows_;
};

// True while a GradShadows::Scope is active on this thread and grad mode is on.
bool exact_gradients_active();

// fn(inputs, params) must be a function of its arguments alone, the same in
// float32 and float64 (no dropout, no randomness, no communication).
using ExactFn =
    std::function<torch::Tensor(const std::vector<torch::Tensor>& inputs, const std::vector<torch::Tensor>& params)>;

// fn(inputs, params). Outside a Scope (or without grad mode) it is fn itself.
// Inside, fn runs in float64 (output rounded to the first floating
// argument's dtype); parameters with a shadow take their gradient in float64 into the
// shadow and none into .grad; inputs (and parameters without a shadow) get
// theirs through autograd, computed in float64 and rounded to their dtype.
// Non-floating inputs (token ids) pass unchanged.
torch::Tensor exact_op(const ExactFn& fn, const std::vector<torch::Tensor>& inputs,
                       const std::vector<torch::Tensor>& params);

// `parameter` as used by a computation that every rank runs identically on
// the same (gathered) rows: its gradient is counted once, on rank 0 (into its
// shadow inside a Scope), so that the gradients summed over ranks are the
// one-rank gradient. Collective-free.
torch::Tensor replicated_parameter(const torch::Tensor& parameter, const Communicator& comm);

}  // namespace mgca::comm
