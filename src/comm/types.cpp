#include "mgca/comm/types.h"

#include "mgca/util/error.h"

namespace mgca::comm {

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
