// `mgca train` as functions: the collective job loading and the whole run
// (device, threads, seeds, the task for config.method, the trainer).
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/data/batch.h"
#include "mgca/train/config.h"
#include "mgca/train/task.h"
#include "mgca/train/trainer.h"

namespace mgca::train {

// Collective. Rank 0 reads and validates the job file with the overrides
// (load_config: types, ranges, the dataset and the other files) and
// broadcasts the resolved Config (Boost.Serialization archive); every rank
// returns the identical Config. A rejected job raises comm::CollectiveError on
// every rank with rank 0's message (echo on the other ranks), before any
// training starts.
Config load_config_collective(const std::filesystem::path& job_file, const std::vector<std::string>& overrides,
                              comm::Communicator& comm);

// Where a task's batches come from. The default is the loader over
// config.data.train; benchmarks (bench/step) substitute fixed in-memory
// batches so that the rest of the task is the code `mgca train` runs. The
// contract is the loader's (docs/contract.md §5.4): after seek(e, k), next() returns
// this rank's b-slice of micro-batch k of epoch e, on the task's device.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t size() const = 0;  // samples in the dataset (global)
  virtual void seek(int64_t epoch, int64_t batch) = 0;
  virtual const data::Batch& next() = 0;
  virtual const data::Batch& batch() const = 0;  // the last next()
};

// The task of config.method ("mgca", "convirt"): its model built on `device`
// from the current torch seed, its data from `source` (default: the loader
// at epoch 0). Collective only through the model's communicator (nothing is
// exchanged here).
std::unique_ptr<Task> make_task(const Config& config, std::shared_ptr<comm::Communicator> comm,
                                torch::Device device, std::unique_ptr<BatchSource> source = nullptr);

// Collective: takes the run folder's lock on rank 0 (RunLock: another run
// of the same name raises CollectiveError on every rank), selects the device and thread count, logs host/rank/device once
// per rank, builds the task from config.seed (identical initial weights on
// every rank), seeds each rank's own generator (dropout) from (seed, rank),
// and runs the Trainer.
RunResult run_training(const Config& config, std::shared_ptr<comm::Communicator> comm);

}  // namespace mgca::train
