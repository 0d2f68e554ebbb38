// Options of the communicator and of the gradient all-reduce, and the [comm]
// table of a job that holds both (no torch). Each default lives once, in the
// struct of the code that acts on it; visit_comm_settings() binds each
// job-file key to its field with its meaning and allowed range.
#pragma once

#include <cstdint>

#include "mgca/comm/types.h"
#include "mgca/util/option_types.h"

namespace mgca::comm {

// Communicator::world's options. Collective: every rank passes the same
// backend (device is the rank's own).
struct CommOptions {
  Backend backend = Backend::Auto;
  double timeout_seconds = 600.0;  // watchdog for every collective
  bool validate = true;            // cross-rank shape/dtype check before each collective (~0.6 µs a call;
                                   // GradSync's bucket all-reduces skip it, their layout is checked once)
  // MPI counts are C ints: host messages larger than this are split into
  // several collectives (results are the same; only the message size changes).
  int64_t max_message_bytes = int64_t{1} << 30;
  // CUDA device of this rank for NCCL; -1: local_rank() % number of visible
  // devices. Creating NCCL communicators fails on every rank, naming the
  // host, when two ranks of a host would share a physical GPU.
  int device = -1;
};

// GradSync's options (grad_sync.h). Every rank passes the same.
struct GradSyncOptions {
  double bucket_cap_mb = 25.0;       // MiB per bucket (a larger parameter gets a bucket of its own)
  double first_bucket_cap_mb = 1.0;  // MiB of the first bucket (the last parameters)
  // BFloat16: a float32/float64 bucket is rounded to bf16 for the all-reduce
  // and the average is written back into the full-precision bucket and
  // .grad (bucket sizes still count the parameters' own bytes).
  GradDtype wire_dtype = GradDtype::Native;
  // Launch buckets from gradient hooks during backward. false: no hooks;
  // finalize() takes every accumulated .grad and does all the communication.
  bool overlap = true;
  // Sum over ranks instead of the average. Not a job key: the trainer sets it
  // under runtime.batch_invariant, where each rank holds its share of the
  // global-batch gradient (float64 shadows, exact_grad.h).
  bool sum = false;
};

// The [comm] table of a job: the world communicator's options and the
// gradient all-reduce's.
struct CommSettings {
  CommOptions communicator;
  GradSyncOptions gradients;
};

// f(key, field&, meaning, util::Range) for every key of [comm], in the resolved TOML's order.
template <typename Settings, typename F>
void visit_comm_settings(Settings& k, F&& f) {
  using util::Range;
  f("comm.backend", k.communicator.backend,
    "device tensors: auto (NCCL when every rank has a GPU, else MPI), mpi (staged through host memory), "
    "nccl (an error where NCCL cannot be used); host tensors always go through MPI",
    Range{});
  f("comm.timeout_s", k.communicator.timeout_seconds, "watchdog: a collective taking longer ends the job",
    Range::above(0));
  f("comm.bucket_mb", k.gradients.bucket_cap_mb, "gradient all-reduce bucket size (MiB)", Range::above(0));
  f("comm.overlap", k.gradients.overlap, "launch bucket all-reduces from backward hooks", Range{});
  f("comm.grad_dtype", k.gradients.wire_dtype,
    "what the gradient all-reduce sends: native (the gradients' dtype) or bf16 (half the bytes of float32; "
    "averaged back into float32 .grad)", Range{});
  f("comm.validate", k.communicator.validate,
    "cross-rank shape/dtype check before each collective, naming the ranks that differ (about 0.6 µs a call)",
    Range{});
}

}  // namespace mgca::comm
