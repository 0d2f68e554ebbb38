// NCCL on raw device pointers and CUDA streams: needs only the CUDA toolkit
// (no torch, no CUDA libtorch). Compiled whenever CMake found the toolkit and
// NCCL (MGCA_HAVE_NCCL in mgca/build_config.h); in other builds every entry
// point exists and reports "built without NCCL", so callers compile anywhere.
//
// Stream discipline: every collective is enqueued on the communicator's own
// stream after everything already enqueued on the caller's `compute` stream
// (a CUDA event), and returns the completion Event; `event->wait_on(compute)`
// orders later compute work after it. Nothing blocks the host.
//
// Failure: the job watchdog polls every live NcclComm about every 200 ms.
// An asynchronous NCCL error (ncclCommGetAsyncError) or a collective still
// pending after `timeout_seconds` prints a message naming the collective and
// the rank, aborts the NCCL communicator (ncclCommAbort) and then the job
// (MPI_Abort, exit code 1). Destruction destroys a healthy communicator once
// its pending collectives finish (ncclCommDestroy) and aborts one with a
// failed launch, an asynchronous error or work still pending after
// `timeout_seconds`: ncclCommDestroy would wait for it forever.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <memory>
#include <string>

#include "mgca/comm/types.h"

namespace mgca::comm::nccl {

enum class DataType { Float32, Float64, Float16, BFloat16, Int64, Int32, Int8, UInt8, Bool };
size_t element_size(DataType type);
const char* data_type_name(DataType type);

using Stream = void*;  // a cudaStream_t; nullptr is the legacy default stream

// True when this build has NCCL (CMake found the CUDA toolkit and NCCL).
bool compiled();
// Number of visible CUDA devices. 0 when there is none, with the reason in
// *why (e.g. "cudaGetDeviceCount: CUDA driver version is insufficient for
// CUDA runtime version", or "built without the CUDA toolkit").
int device_count(std::string* why = nullptr);
// The physical identity of visible device `device` (its UUID, as nvidia-smi
// prints it: "GPU-1b2c…"), the same whatever CUDA_VISIBLE_DEVICES numbering
// a process sees it under. Raises on CUDA errors and in builds without NCCL.
std::string device_uuid(int device);
// The NCCL library version at run time ("2.28.9"), or "none".
std::string version();

// Completion marker of enqueued device work (wraps a cudaEvent_t).
class Event {
 public:
  virtual ~Event() = default;
  // `stream` waits for the event (no host synchronisation).
  virtual void wait_on(Stream stream) = 0;
  // The host blocks until the event completed.
  virtual void synchronize() = 0;
  // True when the event completed.
  virtual bool query() = 0;
};
// Records an event on `stream` (device `device`) now.
std::shared_ptr<Event> record_event(Stream stream, int device);

class NcclComm {
 public:
  struct Options {
    int device = 0;                  // CUDA device of this rank
    double timeout_seconds = 600.0;  // watchdog limit per collective
    Stream stream = nullptr;         // communication stream to use; nullptr: create one
    std::string name = "nccl";       // names the communicator in messages
  };

  // Collective over `comm`: rank 0 creates the ncclUniqueId and broadcasts it
  // with MPI_Bcast; every rank binds options.device and creates the NCCL
  // communicator (ncclCommInitRank). Every rank of `comm` must call it.
  static std::unique_ptr<NcclComm> create(MPI_Comm comm, const Options& options);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const;
  int size() const;
  int device() const;
  Stream stream() const;  // the communication stream

  // Element counts are size_t (no INT_MAX limit). send == recv is allowed
  // for all_reduce and broadcast (in place). Every rank passes the same
  // count, type and op. Avg needs a floating-point type; Bool reduces as
  // any (Sum, Max) or all (Min).
  std::shared_ptr<Event> all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op,
                                    Stream compute);
  // recv holds size() * send_count elements, rank r's block at r * send_count.
  std::shared_ptr<Event> all_gather(const void* send, void* recv, size_t send_count, DataType type,
                                    Stream compute);
  // send holds size() * recv_count elements; rank r receives the reduction of block r.
  std::shared_ptr<Event> reduce_scatter(const void* send, void* recv, size_t recv_count, DataType type,
                                        ReduceOp op, Stream compute);
  std::shared_ptr<Event> broadcast(const void* send, void* recv, size_t count, DataType type, int root,
                                   Stream compute);

  // Raises if NCCL reported an asynchronous error on this communicator.
  void check_async_error();

 private:
  struct Impl;
  explicit NcclComm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Small device helpers for tests and benchmarks (they raise on CUDA errors).
void set_device(int device);
void* device_alloc(size_t bytes);
void device_free(void* pointer);
Stream create_stream();
void destroy_stream(Stream stream);
void synchronize(Stream stream);
// Asynchronous copies on `stream` (host memory need not be pinned: the
// copy is then synchronous with respect to the host).
void copy_to_device(void* device_dst, const void* host_src, size_t bytes, Stream stream);
void copy_to_host(void* host_dst, const void* device_src, size_t bytes, Stream stream);

}  // namespace mgca::comm::nccl
