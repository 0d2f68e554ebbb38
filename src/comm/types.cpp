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

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::Auto: return "auto";
    case Backend::Mpi: return "mpi";
    case Backend::Nccl: return "nccl";
  }
  return "?";
}

Backend parse_backend(const std::string& name) {
  for (Backend b : {Backend::Auto, Backend::Mpi, Backend::Nccl}) {
    if (name == backend_name(b)) return b;
  }
  MGCA_FAIL("unknown communication backend '{}' (valid: auto, mpi, nccl)", name);
}

const char* grad_dtype_name(GradDtype dtype) {
  switch (dtype) {
    case GradDtype::Native: return "native";
    case GradDtype::BFloat16: return "bf16";
  }
  return "?";
}

GradDtype parse_grad_dtype(const std::string& name) {
  for (GradDtype d : {GradDtype::Native, GradDtype::BFloat16}) {
    if (name == grad_dtype_name(d)) return d;
  }
  MGCA_FAIL("unknown gradient dtype '{}' (valid: native, bf16)", name);
}

}  // namespace mgca::comm
