#include "mgca/comm/agreement.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

namespace mgca::comm {

void check_ranks_agree(Communicator& comm, const std::string& what, const std::vector<int64_t>& values) {
  const auto n = static_cast<int64_t>(values.size());
  // One all-reduce of [v, −v] with Max gives every value's max and −min.
  auto both = torch::empty({2 * n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    both[i] = values[i];
    both[n + i] = -values[i];
  }
  comm.all_reduce(both, ReduceOp::Max);
  std::vector<int64_t> lo(n), hi(n);
  bool agree = true;
  for (int64_t i = 0; i < n; ++i) {
    hi[i] = both[i].item<int64_t>();
    lo[i] = -both[n + i].item<int64_t>();
    agree = agree && lo[i] == hi[i];
  }
  if (agree) return;
  MGCA_COLLECTIVE_FAIL(comm.rank() != 0, "{}: ranks disagree (this rank: [{}]; over ranks, min [{}] max [{}])", what,
                       fmt::join(values, ", "), fmt::join(lo, ", "), fmt::join(hi, ", "));
}

}  // namespace mgca::comm
