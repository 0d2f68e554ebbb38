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
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
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

// The model tensors of a checkpoint folder (or a model.safetensors file).
std::map<std::string, torch::Tensor> load_model_tensors(const std::filesystem::path& checkpoint);
std::map<std::string, std::string> load_model_metadata(const std::filesystem::path& checkpoint);
std::map<std::string, torch::Tensor> load_optimizer_tensors(const std::filesystem::path& checkpoint);
// This rank's state; std::nullopt when `rank` is beyond the ranks that wrote
// the checkpoint (rank 0's state says how many). Errors name the file and
// the rank: a state file of a writing rank that is missing, unreadable, or
// written by another rank or at another step.
std::optional<RankState> load_rank_state(const std::filesystem::path& checkpoint, int rank);

// Copies `tensors` into the module's parameters and buffers (by name). Every
// name of the module must be present with the same shape, and every tensor
// must belong to the module; the error lists all differences.
void load_module_state(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                       const std::string& source);
// The module's parameters and buffers by name (the model.safetensors content).
NamedTensors module_state(const torch::nn::Module& module);

}  // namespace mgca::train
