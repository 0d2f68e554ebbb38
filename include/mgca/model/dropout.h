// Fast inverted dropout for CPU tensors (BERT and attention dropout).
//
// libtorch 1.13's CPU dropout draws one Bernoulli per element from a
// mutex-guarded mt19937 (~40 ns/element: in BERT's train step it costs about
// as much as a sixth of the layer's GEMMs). This one hashes (seed, element
// index) with a counter-based 32-bit mix (AVX2 where the CPU has it, chosen at
// run time), runs on all intra-op threads, and keeps a 1-bit mask for backward. The mask depends only on the
// seed and the element index: the same on any thread count. The seed of each
// call comes from libtorch's default CPU generator, so torch::manual_seed
// reproduces it. Non-CPU tensors use at::dropout.
#pragma once

#include <torch/types.h>

namespace mgca::model {

// y = x · mask / (1 − p), mask ~ Bernoulli(1 − p) per element; identity when
// !train or p == 0. Differentiable in x.
torch::Tensor fast_dropout(const torch::Tensor& x, double p, bool train);

}  // namespace mgca::model
