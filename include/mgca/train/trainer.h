// The training loop (docs/contract.md §6): optimizer steps over a Task, gradient sync
// across ranks, checkpoints and resume, preemption, NaN/Inf detection,
// metrics.jsonl and the progress bar.
//
// One optimizer step s (0-based; "step s+1" in metrics and checkpoints, which
// count completed steps):
//   epoch = s / steps_per_epoch; micro-batches (s mod steps_per_epoch)·A … +A-1
//   of that epoch (A = optimizer.accumulate), each: next_batch, forward (bf16
//   autocast on GPU when enabled), backward of total/A; gradients averaged over
//   ranks once, after the last micro-batch; after_backward; loss parts averaged
//   over ranks and checked for NaN/Inf; global-norm clipping; Adam(W) at the
//   schedule's lr for s.
// steps_per_epoch = floor(dataset_size / (W · b · A)) (the last partial global
// batch of an epoch is dropped, as the official code's dataloader length
// gives); total steps = schedule.max_steps or epochs × steps_per_epoch.
//
// Across ranks: the constructor and run() are collective. Every rank starts
// from rank 0's weights (broadcast) or from the same checkpoint; with the
// Task's data contract the W-rank run equals the one-rank run of the same
// global batch up to floating-point reassociation (docs/contract.md §2.6), and a resumed
// run continues bit for bit (model, optimizer state, RNG states and data
// position are restored).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>

#include "mgca/comm/communicator.h"
#include "mgca/train/config.h"
#include "mgca/train/task.h"

namespace mgca::train {

enum class RunStatus {
  Completed,  // reached the last step of the schedule
  Stopped,    // reached schedule.stop_after_steps
  Preempted,  // a rank got SIGUSR1/SIGTERM: checkpointed, exit with cli::kExitPreempted
};

struct RunResult {
  RunStatus status = RunStatus::Completed;
  int64_t step = 0;         // completed optimizer steps
  int64_t total_steps = 0;  // of the schedule
  std::filesystem::path checkpoint;  // the last checkpoint written (or resumed from)
  int signal = 0;           // for Preempted: the signal a rank of this process got (0 on other ranks)
};

class Trainer {
 public:
  // The task's module must already be on `device`. Collective.
  Trainer(Config config, std::shared_ptr<comm::Communicator> comm, std::unique_ptr<Task> task,
          torch::Device device);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Resumes (checkpoint.resume), trains, checkpoints. Collective. Throws
  // comm::CollectiveError for failures every rank sees alike (NaN/Inf, checkpoint
  // I/O, a checkpoint that does not match), mgca::Error otherwise.
  RunResult run();

  int64_t steps_per_epoch() const;
  int64_t total_steps() const;
  Task& task();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The device for runtime.device on this rank, made this thread's current
// CUDA device: the communicator's NCCL device (comm.device_index(), which
// refuses two ranks of a host on one GPU, naming the host), else
// cuda:<local rank mod visible GPUs>, when there is a GPU and the config
// allows it; otherwise the CPU.
torch::Device select_device(const Config& config, const comm::Communicator& comm);

// runtime.deterministic on a GPU: deterministic algorithms (an op without a
// deterministic kernel raises), deterministic cuDNN without autotuning, and
// CUBLAS_WORKSPACE_CONFIG=:4096:8 unless set. Process-wide; call before the
// first GPU computation. Nothing on the CPU (deterministic for a given thread
// count already).
void set_deterministic(const Config& config, torch::Device device);

// Whether the trainer runs each forward under bf16 autocast on `device`:
// runtime.autocast = bf16 (CPU or GPU), or auto on a GPU; never with
// runtime.dtype = float64. Backward and the optimizer run outside it.
bool uses_autocast(const Config& config, torch::Device device);

// The weights' and activations' dtype of runtime.dtype.
torch::ScalarType scalar_type(ComputeDtype dtype);

// Intra-op threads for runtime.threads (0: cores on the host / ranks on the host).
int select_threads(const Config& config, const comm::Communicator& comm);

}  // namespace mgca::train
