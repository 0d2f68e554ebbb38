// Inverted dropout keyed by sample (BERT hidden, embedding and attention dropout).
//
// Inside a DropoutKeyScope every mask element is a hash of (seed, epoch,
// micro-batch, call index, global sample index of its row, element index
// within the sample): the same sample gets the same mask whichever rank, rank
// count, row position or thread count computes it, so W ranks × b equal one
// rank × N with dropout on (docs/contract.md §2.6). The leading dimension of
// every input is the batch, possibly flattened with the next ones ([b·L, D]):
// row r of the scope's samples owns the r-th contiguous 1/b of the elements.
//
// Without a scope (encoders used alone, unit tests) the key of each call comes
// from libtorch's default CPU generator and the whole tensor is one row, so
// torch::manual_seed reproduces it. Eval (train = false) is the identity.
//
// CPU kernels: a counter-based 32-bit mix per element (AVX2 where the CPU has
// it, chosen at run time) on all intra-op threads, a 1-bit mask kept for
// backward; libtorch's own CPU dropout draws from a mutex-guarded mt19937 at
// ~40 ns/element. Other devices compute the same hash with torch integer ops
// (bit-identical masks; the mask is kept as a bool tensor for backward).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace mgca::model {

// Keys the dropout calls of this thread's forwards while alive. Calls are
// numbered in the order they run (the same on every rank: every rank runs the
// same graph). Scopes do not nest. `samples` are the global indices of the
// batch's rows, in row order.
class DropoutKeyScope {
 public:
  DropoutKeyScope(uint64_t seed, int64_t epoch, int64_t micro_batch, std::vector<int64_t> samples);
  ~DropoutKeyScope();
  DropoutKeyScope(const DropoutKeyScope&) = delete;
  DropoutKeyScope& operator=(const DropoutKeyScope&) = delete;
};

// Where the mask is computed: Auto (CPU kernels on the CPU, torch integer ops
// elsewhere) or TensorOps everywhere (the device path, which the tests compare
// with the CPU kernels on the CPU).
enum class DropoutPath { Auto, TensorOps };

// y = x · mask / (1 − p), mask ~ Bernoulli(1 − p) per element; identity when
// !train or p == 0. Differentiable in x. In a scope, x.size(0) must be a
// multiple of the scope's sample count.
torch::Tensor fast_dropout(const torch::Tensor& x, double p, bool train, DropoutPath path = DropoutPath::Auto);

}  // namespace mgca::model
