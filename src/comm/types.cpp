#include "mgca/comm/types.h"

#include "mgca/util/error.h"

namespace mgca::comm {

BlockRange block_of(int64_t n, int rank, int world) {
  MGCA_CHECK(world > 0 && rank >= 0 && rank < world && n >= 0, "block_of: bad arguments (n {}, rank {}, world {})", n,
             rank, world);
  return {n * rank / world, n * (rank + 1) / world};
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
  }
  return "?";
}

const char* backend_name(Backend backend) { return util::enum_name(backend); }

Backend parse_backend(const std::string& name) {
  if (auto backend = util::enum_from_name<Backend>(name)) return *backend;
  MGCA_FAIL("unknown communication backend '{}' (valid: {})", name, util::enum_choices<Backend>());
}

const char* grad_dtype_name(GradDtype dtype) { return util::enum_name(dtype); }

GradDtype parse_grad_dtype(const std::string& name) {
  if (auto dtype = util::enum_from_name<GradDtype>(name)) return *dtype;
  MGCA_FAIL("unknown gradient dtype '{}' (valid: {})", name, util::enum_choices<GradDtype>());
}

}  // namespace mgca::comm
