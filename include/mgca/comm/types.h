// Torch-free vocabulary of the communication layer (reductions, backends),
// shared by the tensor Communicator and the raw-pointer NCCL communicator.
#pragma once

#include <cstdint>
#include <string>

#include "mgca/util/option_types.h"

namespace mgca::comm {

// Avg is the sum divided by the number of ranks (floating-point dtypes only).
enum class ReduceOp { Sum, Avg, Max, Min };

// Which library moves device (GPU) tensors. Host tensors always go through MPI.
//   Auto: NCCL when libtorch has CUDA and every rank sees a GPU, otherwise
//         device tensors are staged through host memory and MPI.
//   Mpi:  every tensor through MPI (device tensors staged through host memory).
//   Nccl: device tensors through NCCL; creating the communicator fails with
//         a message when NCCL cannot be used on some rank.
enum class Backend { Auto, Mpi, Nccl };
inline constexpr util::NamedValue<Backend> kBackendNames[] = {
    {Backend::Auto, "auto"}, {Backend::Mpi, "mpi"}, {Backend::Nccl, "nccl"}};
constexpr const auto& enum_names(Backend) { return kBackendNames; }

// What the gradient all-reduce sends. Native: the gradients' own dtype.
// BFloat16: float32/float64 gradients travel as bf16 (half the bytes of
// float32) and are averaged back into the full-precision .grad the optimizer
// reads; gradients already in a 16-bit type travel as they are.
enum class GradDtype { Native, BFloat16 };
inline constexpr util::NamedValue<GradDtype> kGradDtypeNames[] = {{GradDtype::Native, "native"},
                                                                   {GradDtype::BFloat16, "bf16"}};
constexpr const auto& enum_names(GradDtype) { return kGradDtypeNames; }

const char* reduce_op_name(ReduceOp op);  // "sum", "avg", "max", "min"
const char* backend_name(Backend backend);  // "auto", "mpi", "nccl"
// Rank `rank`'s contiguous block [begin, end) of the items 0 … n−1 split over
// `world` ranks: [n·rank/world, n·(rank+1)/world). The blocks of ranks
// 0 … world−1 tile [0, n) in order and differ in size by at most one, so work
// split this way comes out in index order for any rank count.
struct BlockRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};
BlockRange block_of(int64_t n, int rank, int world);

// Parses "auto" | "mpi" | "nccl" (the `comm.backend` config value); anything
// else is an error that lists the valid names.
Backend parse_backend(const std::string& name);
const char* grad_dtype_name(GradDtype dtype);  // "native", "bf16"
// Parses "native" | "bf16" (the `comm.grad_dtype` config value).
GradDtype parse_grad_dtype(const std::string& name);

}  // namespace mgca::comm
