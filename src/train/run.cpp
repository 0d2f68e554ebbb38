#include "mgca/train/run.h"

#include <torch/torch.h>

#include "mgca/comm/collective_error.h"
#include "mgca/train/run_lock.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"
#include "mgca/util/rng.h"
#include "mgca/util/torch_compat.h"

namespace mgca::train {

Config load_config_collective(const std::filesystem::path& job_file, const std::vector<std::string>& overrides,
                              comm::Communicator& comm) {
  // "C<archive>" or "E<message>".
  std::string message;
  if (comm.rank() == 0) {
    try {
      message = "C" + serialize(load_config(job_file, overrides, comm.size()));
    } catch (const mgca::Error& error) {
      message = "E" + error.message();
    }
  }
  message = comm.broadcast_string(message, 0);
  if (!message.empty() && message[0] == 'C') return deserialize(message.substr(1));
  MGCA_COLLECTIVE_FAIL(comm.rank() != 0, "{}", message.empty() ? "empty config broadcast" : message.substr(1));
}

RunResult run_training(const Config& config, std::shared_ptr<comm::Communicator> comm) {
  // Rank 0 holds the run folder's lock until the run ends; a second run of
  // the same name fails here, on every rank, before anything is written.
  std::unique_ptr<RunLock> lock;
  std::string lock_error;
  if (comm->rank() == 0) {
    try {
      lock = std::make_unique<RunLock>(config.run_dir());
    } catch (const mgca::Error& error) {
      lock_error = error.message();
    }
  }
  lock_error = comm->broadcast_string(lock_error, 0);
  if (!lock_error.empty()) MGCA_COLLECTIVE_FAIL(comm->rank() != 0, "{}", lock_error);
  const torch::Device device = select_device(config, *comm);
  set_deterministic(config, device);
  const int threads = select_threads(config, *comm);
  compat::set_cpu_threads(threads);
  log::all("host {} rank {}/{} local rank {}/{} device {} threads {}", comm->host(), comm->rank(), comm->size(),
           comm->local_rank(), comm->local_size(), device.str(), threads);
  // The same initial weights on every rank (the trainer also broadcasts rank 0's).
  torch::manual_seed(static_cast<uint64_t>(config.seed));
  std::unique_ptr<Task> task = make_task(config, comm, device);
  // Each rank's own stream for whatever draws from torch's generator outside a
  // dropout key scope (the tasks key dropout by sample, so training draws
  // nothing from it); restored from the checkpoint where the same rank wrote it.
  torch::manual_seed(util::make_key({static_cast<uint64_t>(config.seed), 0x7261'6e6bULL,
                                     static_cast<uint64_t>(comm->rank())}) >> 1);
  Trainer trainer(config, comm, std::move(task), device);
  return trainer.run();
}

}  // namespace mgca::train
