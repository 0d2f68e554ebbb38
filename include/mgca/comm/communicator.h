// The communication layer: one Communicator per process group.
//
// Host (CPU) tensors go through MPI; device tensors through NCCL (where
// libtorch has CUDA; see Backend in types.h). Every collective is a
// *collective* call: every rank of the communicator must call the same
// collectives in the same order, with tensors of the same dtype, device type
// and (except where stated) the same shape. When CommOptions::validate is on,
// a mismatch is detected before any data moves and reported on every rank as
// an error naming each rank's collective, dtype and shape. A collective that
// does not complete within CommOptions::timeout_seconds aborts the whole job
// (MPI_Abort, exit code 1) with a message naming the collective and the rank.
//
// NCCL order. A rank has one NCCL communicator for all its device
// collectives, blocking and asynchronous (all_reduce_async enqueues at the
// call; only host work goes to the worker thread), so its NCCL sequence is
// its call sequence, and NCCL needs only that sequence to be the same on
// every rank. In training it is: the forward's collectives (SyncBatchNorm,
// gathers) are called by the main thread; during backward the main thread
// waits in backward() while libtorch's autograd engine runs every CUDA node
// of the graph (SyncBatchNorm and gather backwards, and the gradient hooks
// that launch GradSync's buckets) on its one thread for the rank's GPU, in an
// order fixed by the graph, which every rank builds alike; GradSync::finalize
// launches the remaining buckets after backward returned. No two threads
// enqueue at once, so the two-communicator deadlock NCCL warns about (two
// communicators' kernels waiting on each other in different orders on
// different ranks) cannot arise. This holds while every tensor of the model
// is on the rank's GPU (a CPU node runs on the main thread, concurrently).
// The price: a SyncBatchNorm collective waits for a bucket all-reduce
// enqueued before it (PyTorch's default process group serialises SyncBN and
// DDP the same way).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "mgca/comm/options.h"
#include "mgca/comm/runtime.h"
#include "mgca/comm/types.h"

namespace mgca::comm {

// An asynchronous collective in flight.
class Work {
 public:
  virtual ~Work() = default;
  // Host tensors: blocks until the result is in the tensor (subject to the
  // watchdog). Device tensors: orders the calling thread's current CUDA
  // stream after the collective (no host synchronisation). Idempotent.
  virtual void wait() = 0;
  // Non-blocking completion test; rethrows the collective's error if it failed.
  virtual bool test() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  // All ranks of the job (a duplicate of MPI_COMM_WORLD). Requires init().
  // Collective: every rank creates its communicators in the same order, with
  // the same options.backend.
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
  // The CUDA device this rank's NCCL communicator uses, -1 when device tensors
  // do not go through NCCL (no GPU, CPU libtorch, or Backend::Mpi).
  virtual int device_index() const = 0;
  // A new communicator over the same ranks, for host tensors only (backend
  // mpi; the same timeout and validation): a background thread's collectives
  // on it never interleave with this communicator's. Collective.
  virtual std::shared_ptr<Communicator> duplicate_for_host() = 0;
  // One line for logs, e.g. "MPI (host), NCCL 2.28.9 on cuda:0 (device), 4 ranks".
  virtual std::string describe() const = 0;

  // In place. After return every rank holds the same values (for Avg: the sum
  // divided by size(), floating-point dtypes only; bool: Sum/Max = any,
  // Min = all). Contiguous or not; empty tensors are allowed. bfloat16/half
  // are accumulated pairwise in float32 and rounded at every step (as NCCL).
  virtual void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) = 0;
  // Asynchronous all-reduce of a contiguous tensor; the tensor must stay alive
  // and untouched until wait() returns. Host tensors (and device tensors
  // staged through MPI) run in call order on a channel and thread of their
  // own, so they never reorder against each other and never interleave with
  // the blocking collectives of another thread. Device tensors under NCCL are
  // enqueued at the call on the rank's one NCCL communicator, in call order
  // with the blocking device collectives (see "NCCL order" above).
  // validate = false skips the per-call shape check (for callers that proved
  // the layout agrees once, as GradSync does); the check also needs
  // options().validate.
  virtual std::shared_ptr<Work> all_reduce_async(torch::Tensor tensor, ReduceOp op = ReduceOp::Sum,
                                                 bool validate = true) = 0;
  // Concatenation along dim 0 of every rank's tensor, in rank order:
  // [size() * d0, ...] (a 0-dim tensor gathers to [size()]). All ranks pass
  // the same shape.
  virtual torch::Tensor all_gather(const torch::Tensor& tensor) = 0;
  // all_gather into a caller-owned contiguous `output` of shape
  // [size() * d0, ...] and the input's dtype and device (no allocation).
  virtual void all_gather_into(torch::Tensor& output, const torch::Tensor& input) = 0;
  // Input [size() * d0, ...]: rank r receives the reduction of block r, [d0, ...].
  virtual torch::Tensor reduce_scatter(const torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) = 0;
  // reduce_scatter into a caller-owned contiguous `output` of shape [d0, ...].
  virtual void reduce_scatter_into(torch::Tensor& output, const torch::Tensor& input,
                                   ReduceOp op = ReduceOp::Sum) = 0;
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
