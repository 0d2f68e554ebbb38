// Collectives that keep the autograd graph.
#pragma once

#include <torch/types.h>

#include <memory>

#include "mgca/comm/communicator.h"

namespace mgca::comm {

// Forward: all_gather along dim 0 ([b, ...] → [W*b, ...]).
// Backward: the incoming gradient [W*b, ...] is reduce-scattered with Sum, so
// rank r receives Σ over ranks of the gradient w.r.t. its own rows. With the
// parameter gradients then averaged over ranks (gradient sync), this gives the
// gradient of the single-process loss over the global batch scaled as the
// per-rank mean loss (open_clip's gather_with_grad + local_loss).
// Every rank must pass the same shape.
torch::Tensor all_gather_with_grad(const torch::Tensor& tensor,
                                   const std::shared_ptr<Communicator>& comm);

// Forward: all_gather along dim 0, as above. Backward: this rank's rows of
// the incoming gradient, no communication. For a computation that every
// rank runs identically on the gathered rows (runtime.batch_invariant):
// each rank then holds the one-rank gradient of its own rows, and the
// parameter gradients are summed over ranks, not averaged.
torch::Tensor all_gather_replicated(const torch::Tensor& tensor, const std::shared_ptr<Communicator>& comm);

}  // namespace mgca::comm
