// Collectives on CUDA tensors (internal): the NCCL tensor adapter, compiled
// only where libtorch has CUDA (nccl_torch.cpp).
#pragma once

#include <mpi.h>
#include <torch/types.h>

#include <memory>
#include <string>

#include "mgca/comm/nccl.h"
#include "mgca/comm/types.h"

namespace mgca::comm::detail {

// Every tensor given is contiguous and on device_index(). Calls are ordered
// with the current CUDA stream of that device through events: the
// collective starts after the work already enqueued there, and work enqueued
// there afterwards starts after the collective. The host never blocks.
class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  virtual int device_index() const = 0;
  virtual std::string describe() const = 0;
  virtual void all_reduce(torch::Tensor& tensor, ReduceOp op) = 0;
  virtual void all_gather(torch::Tensor& output, const torch::Tensor& input) = 0;
  virtual void reduce_scatter(torch::Tensor& output, const torch::Tensor& input, ReduceOp op) = 0;
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  // The asynchronous all-reduce: enqueued at the call, after the work already
  // on the calling thread's current stream; returns its completion, which
  // join() makes the joining thread's current stream wait for.
  virtual std::shared_ptr<nccl::Event> start_all_reduce(torch::Tensor& tensor, ReduceOp op) = 0;
  virtual void join(nccl::Event& done) = 0;
};

// True when this build runs NCCL on torch tensors (libtorch has CUDA, NCCL
// was found) and a CUDA device is visible; otherwise false with the reason.
bool device_backend_usable(std::string* why);
// Collective over `comm`: one NCCL communicator on `device`.
std::unique_ptr<DeviceBackend> make_nccl_backend(MPI_Comm comm, int device, double timeout_seconds,
                                                 const std::string& name);

}  // namespace mgca::comm::detail
