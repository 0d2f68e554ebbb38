// The communication layer: one Communicator per process group.
//
// Host (CPU) tensors go through MPI; device tensors through NCCL (where
// libtorch has CUDA). Every collective is a *collective* call: every rank of
// the communicator must call the same collectives in the same order, with
// tensors of the same dtype and (except where stated) the same shape. When
// CommOptions::validate is on, a mismatch is detected before any data moves
// and reported as an error naming both ranks' shapes/dtypes. A collective
// that does not complete within CommOptions::timeout_seconds aborts the whole
// job (MPI_Abort) with a message naming the collective and the rank.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "mgca/comm/runtime.h"

namespace mgca::comm {

enum class ReduceOp { Sum, Avg, Max, Min };
enum class Backend { Auto, Mpi, Nccl };  // Auto: NCCL for device tensors, MPI for host tensors

struct CommOptions {
  Backend backend = Backend::Auto;
  double timeout_seconds = 600.0;  // watchdog for every collective
  bool validate = true;            // cross-rank shape/dtype check before each collective
};

// An asynchronous collective in flight.
class Work {
 public:
  virtual ~Work() = default;
  // Blocks until done (subject to the watchdog timeout). Idempotent.
  virtual void wait() = 0;
  // Non-blocking completion test; drives progress.
  virtual bool test() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  // All ranks of the job (a duplicate of MPI_COMM_WORLD). Requires init().
  // Collective: every rank creates its communicators in the same order.
  static std::shared_ptr<Communicator> world(const CommOptions& options = {});
  // A communicator of this process alone, usable without MPI: every
  // collective is the identity (all_gather returns a copy, Avg/Sum of one).
  // Computations given single() produce the single-process result.
  static std::shared_ptr<Communicator> single();

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;  // rank among the processes on this host
  virtual int local_size() const = 0;
  virtual const std::string& host() const = 0;
  virtual const CommOptions& options() const = 0;

  // In place. After return every rank holds the same values (for Avg: the sum
  // divided by size()). Contiguous or not; empty tensors are allowed.
  virtual void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) = 0;
  // Asynchronous all-reduce of a contiguous tensor; the tensor must stay alive
  // and untouched until wait() returns.
  virtual std::shared_ptr<Work> all_reduce_async(torch::Tensor tensor, ReduceOp op = ReduceOp::Sum) = 0;
  // Concatenation along dim 0 of every rank's tensor, in rank order:
  // [size() * d0, ...]. All ranks pass the same shape.
  virtual torch::Tensor all_gather(const torch::Tensor& tensor) = 0;
  // Input [size() * d0, ...]: rank r receives the reduction of block r, [d0, ...].
  virtual torch::Tensor reduce_scatter(const torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) = 0;
  // In place: every rank receives root's tensor (same shape and dtype on all ranks).
  virtual void broadcast(torch::Tensor& tensor, int root = 0) = 0;
  virtual void barrier() = 0;

  // Host-scalar helpers (small, blocking, MPI even when tensors live on GPU).
  virtual double all_reduce_scalar(double value, ReduceOp op) = 0;
  // True on every rank if `flag` is true on any rank (e.g. agree on a stop signal).
  virtual bool any(bool flag) = 0;
  // Root's string on every rank (e.g. the resolved config).
  virtual std::string broadcast_string(const std::string& value, int root = 0) = 0;
};

}  // namespace mgca::comm
