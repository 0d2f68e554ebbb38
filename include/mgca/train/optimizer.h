// Adam / AdamW over named parameters, with per-parameter state that
// round-trips bit-exactly through checkpoints, plus global-norm clipping.
//
// The update is PyTorch's (torch.optim.AdamW / Adam, single-tensor path, as
// in 1.13 and 2.x), operation for operation, so the same gradients give the
// same bits:
//   AdamW: p *= 1 - lr·wd;            m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²
//   Adam:  g += wd·p (L2, coupled);   the same m, v
//   p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + ε)
// t counts the steps of each parameter: a parameter whose gradient is
// undefined at a step (MGCA's frozen prototypes in epoch 0) is skipped
// entirely, its state and weight decay included, as PyTorch does.
//
// Weight-decay groups: a parameter whose name contains one of `no_decay`'s
// strings gets weight decay 0. The official MGCA code passes
// model.parameters() to AdamW with one weight decay (0.05) for everything —
// biases, LayerNorm/BatchNorm weights and the prototypes included — so the
// default list is empty; ["bias", "norm", "bn"] gives the common BERT/ViT
// practice (norms and biases are scale/shift parameters that decay only pulls
// toward 0 without regularizing the function class).
//
// Across ranks: when every rank holds the same parameters and the same
// (synchronized) gradients, every rank computes the same update; nothing here
// communicates.
#pragma once

#include <torch/types.h>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mgca::train {

struct AdamOptions {
  bool decoupled = true;  // true: AdamW; false: Adam with L2 weight decay
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  std::vector<std::string> no_decay;  // name substrings that get weight decay 0
};

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

class Adam {
 public:
  // `params`: name → parameter (float32/float64, on any device), in an order
  // that is the same on every rank. Names must be unique.
  Adam(NamedTensors params, AdamOptions options);

  // One update at learning rate `lr` of every parameter with a defined gradient.
  void step(double lr);
  // Undefines every gradient (the next backward allocates fresh ones).
  void zero_grad();

  const AdamOptions& options() const { return options_; }
  const NamedTensors& parameters() const { return params_; }
  // Weight decay applied to parameter i (0 for the no-decay group).
  double weight_decay_of(size_t i) const { return decay_[i]; }
  // Steps taken by parameter i (PyTorch's state["step"]).
  int64_t steps_of(size_t i) const { return state_[i].step; }

  // State as named tensors: "exp_avg/<param>", "exp_avg_sq/<param>" (the
  // live state on the parameter's device, same dtype and shape: copy it
  // before the next step if it must stay) and "step/<param>" (int64 [1], CPU).
  // Parameters that never stepped have no entries.
  NamedTensors state_tensors() const;
  // Restores state_tensors() output exactly. Errors name the missing,
  // unexpected or mis-shaped tensors. State for a name in `untrained` (a
  // tensor the model has but this optimizer does not train: frozen since the
  // checkpoint was written, or a head bias folded away on load) cannot affect
  // any update: it is dropped, and the names are returned for a warning.
  std::vector<std::string> load_state_tensors(const std::map<std::string, torch::Tensor>& tensors,
                                              const std::set<std::string>& untrained = {});

 private:
  struct State {
    int64_t step = 0;
    torch::Tensor exp_avg, exp_avg_sq;
  };
  NamedTensors params_;
  AdamOptions options_;
  std::vector<double> decay_;
  std::vector<State> state_;
  torch::Tensor root_scratch_;  // sqrt(v) of the SplitSqrt kernel, the size of the largest parameter
};

// How AdamW updates contiguous float32 CPU parameters. PyTorch's update is
// nine tensor operations, nine passes over memory; ours does the same
// per-element operations with the same roundings in fewer passes (AVX2 + FMA):
//   Fused      one pass, the IEEE square root;
//   SplitSqrt  two passes around ATen's own sqrt of v (libtorch 2.11 takes
//              MKL's vsSqrt, within 1 ulp but not always the IEEE root);
//   OpByOp     PyTorch's nine operations (no AVX2/FMA, or neither of the
//              above gives PyTorch's bits on this CPU and ATen build).
// Decided once per process, the first that matches the op-by-op update bit for
// bit on random data: every kernel's result is PyTorch's, bit for bit.
enum class AdamWKernel { Fused, SplitSqrt, OpByOp };
AdamWKernel adamw_kernel();
const char* adamw_kernel_name(AdamWKernel kernel);
// One AdamW update of one parameter (step counts from 1) with `kernel`; a
// tensor the fused kernels cannot take (not contiguous float32 on the CPU)
// goes op by op. `root_scratch` is SplitSqrt's buffer, grown as needed.
// Adam::step calls it with adamw_kernel(); the tests with each kernel.
void adamw_update(AdamWKernel kernel, torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg,
                  torch::Tensor& exp_avg_sq, torch::Tensor& root_scratch, double lr, double wd, double beta1,
                  double beta2, double eps, int64_t step);

// The global L2 norm of the defined gradients, as torch.nn.utils.clip_grad_norm_
// computes it (norm of the per-tensor norms, in the gradients' dtype, returned
// as double). When max_norm > 0 every gradient is multiplied by
// min(1, max_norm / (norm + 1e-6)) as PyTorch does. Returns the norm before clipping.
double clip_grad_norm(const NamedTensors& params, double max_norm);

}  // namespace mgca::train
