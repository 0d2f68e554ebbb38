// Checkpoints (docs/contract.md §6): one folder per saved step,
//
//   <checkpoint dir>/step-00001000/
//       model.safetensors      every parameter and buffer of the model (names as
//                              the model's named_parameters/named_buffers), float32
//                              as trained; metadata: format, method, encoder,
//                              step, epoch, the resolved config (TOML)
//       optimizer.safetensors  Adam state: exp_avg/<param>, exp_avg_sq/<param>,
//                              step/<param>
//       rank-00000.state ...   per-rank state (RankState, Boost.Serialization text
//                              archive): step, epoch, loader position, RNG states
//       config.toml            the resolved config of the run that wrote it
//       DONE                   written last: only folders with DONE are complete
//
// Writing is crash-safe: the folder is first written as step-N.tmp (every file
// itself written to a temporary name, fsynced and renamed), then renamed to
// step-N, then DONE is written and fsynced, then old complete checkpoints
// beyond `keep` are removed. A crash at any point leaves the newest complete
// checkpoint untouched; leftover *.tmp folders are ignored and cleaned up.
//
// Asynchronous checkpoints (CheckpointWriter, checkpoint.async): the step
// loop only copies the content to host memory (its stall); a background
// thread then writes the folder exactly as save_checkpoint does, on a
// communicator of its own. The next snapshot waits for the previous write.
#pragma once

#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/train/checkpoint_files.h"
#include "mgca/train/optimizer.h"

namespace mgca::train {

struct CheckpointContent {
  NamedTensors model;                          // name → tensor (any device)
  NamedTensors optimizer;                      // Adam::state_tensors()
  std::map<std::string, std::string> metadata;  // stored in model.safetensors
  std::string config_toml;                     // config.toml
};

// Collective over `comm`: every rank passes its own RankState; `content` is
// read on rank 0 only (model and optimizer are identical on every rank).
// Returns the folder of the complete checkpoint on every rank. Errors (full
// disk, permissions) name the file.
std::filesystem::path save_checkpoint(const std::filesystem::path& dir, int64_t step,
                                      const CheckpointContent& content, const RankState& state,
                                      int64_t keep, comm::Communicator& comm);

// Writes checkpoints in the background, one at a time.
class CheckpointWriter {
 public:
  // `comm` is used by the writer thread alone: pass a communicator of its own
  // (Communicator::duplicate_for_host()), so that its collectives never
  // interleave with the step loop's.
  CheckpointWriter(std::filesystem::path dir, int64_t keep, std::shared_ptr<comm::Communicator> comm);
  // Waits for a write in flight (its error is dropped: the run already failed).
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Waits for the previous write (rethrowing its error), copies `content`
  // (device or host tensors; read on rank 0 only) into host buffers kept
  // between snapshots, and starts writing step `step`. Every rank calls it
  // at the same step; on return the caller may change the model again.
  void submit(int64_t step, const CheckpointContent& content, const RankState& state);
  // Waits for the write in flight and returns its folder (an empty path if
  // none was ever submitted). Rethrows the write's error: a CollectiveError
  // raised on every rank alike, naming the file and the rank where it failed.
  std::filesystem::path wait();
  // True once the write in flight has failed (no waiting, this rank's view).
  bool failed() const { return failed_.load(); }

 private:
  std::filesystem::path dir_;
  int64_t keep_;
  std::shared_ptr<comm::Communicator> comm_;
  CheckpointContent snapshot_;  // host copies, reused by the next snapshot when the shapes agree
  RankState state_;
  std::thread thread_;
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};
  std::filesystem::path written_;
};

// The model tensors of a checkpoint folder (or a model.safetensors file).
std::map<std::string, torch::Tensor> load_model_tensors(const std::filesystem::path& checkpoint);
std::map<std::string, std::string> load_model_metadata(const std::filesystem::path& checkpoint);
std::map<std::string, torch::Tensor> load_optimizer_tensors(const std::filesystem::path& checkpoint);
// This rank's state; std::nullopt when `rank` is beyond the ranks that wrote
// the checkpoint (rank 0's state says how many). Errors name the file and
// the rank: a state file of a writing rank that is missing, unreadable, or
// written by another rank or at another step.
std::optional<RankState> load_rank_state(const std::filesystem::path& checkpoint, int rank);

// Copies `tensors` into the module's parameters and buffers (by name):
// model::load_weights with our names, strict, same dtype, no position
// interpolation. Every name of the module must be present with the same shape
// and dtype, and every tensor must belong to the module; the error lists all
// differences and nothing is copied then.
void load_module_state(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                       const std::string& source);
// The module's parameters and buffers by name (the model.safetensors content).
NamedTensors module_state(const torch::nn::Module& module);

}  // namespace mgca::train
