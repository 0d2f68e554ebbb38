// Steps that every rank takes together and that must end alike on every rank:
// a rank's failure, or ranks that disagree, fail every rank at the same point
// with a CollectiveError (collective_error.h), so none is left waiting in the
// next collective and the message is printed once per cause.
#pragma once

#include <exception>
#include <string>
#include <vector>

#include "mgca/comm/collective_error.h"
#include "mgca/comm/communicator.h"

namespace mgca::comm {

// Who prints a failure of run_on_every_rank: each failing rank its own
// message, or (failures that are alike on every rank, e.g. reading the same
// files) rank 0 only.
enum class FailureEcho { EachFailingRank, RankZeroOnly };

// Collective: every rank calls it with the same `what`. Runs `body` on this
// rank, then agrees (one all-reduce) whether every rank succeeded. On success
// it returns on every rank; otherwise every rank raises CollectiveError
// "<what>: <message>" (its own message, or "failed on another rank").
template <typename F>
void run_on_every_rank(Communicator& comm, const std::string& what, F&& body,
                       FailureEcho echo = FailureEcho::EachFailingRank) {
  std::string error;
  try {
    body();
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!comm.any(!error.empty())) return;
  if (!error.empty()) {
    MGCA_COLLECTIVE_FAIL(echo == FailureEcho::RankZeroOnly && comm.rank() != 0, "{}: {}", what, error);
  }
  MGCA_COLLECTIVE_FAIL(true, "{}: failed on another rank (see its message)", what);
}

// Collective: every rank passes as many `values` (same length on every rank).
// Returns when every rank passed the same values; otherwise every rank raises
// CollectiveError "<what>: ranks disagree (this rank: [...]; per value, min
// [...] max [...] over ranks)", printed by rank 0.
void check_ranks_agree(Communicator& comm, const std::string& what, const std::vector<int64_t>& values);

}  // namespace mgca::comm
