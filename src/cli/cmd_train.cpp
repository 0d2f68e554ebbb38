// mgca train JOB.toml [--set key=value ...]: distributed pretraining under
// mpirun or srun (one rank per GPU, or CPU slices). Exit codes: 0 done (or
// stopped at schedule.stop_after_steps), 1 run-time error, 2 bad job file or
// command line, 75 checkpointed after SIGUSR1/SIGTERM (requeue me).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <exception>

#include "command.h"
#include "mgca/comm/communicator.h"
#include "mgca/comm/runtime.h"
#include "mgca/comm/collective_error.h"
#include "mgca/train/config.h"
#include "mgca/train/preemption.h"
#include "mgca/train/run.h"
#include "mgca/util/log.h"

namespace mgca::cli {
namespace {

int run_train(int argc, char** argv) {
  CLI::App app{"Pretrain MGCA or ConVIRT (run under mpirun or srun; one rank per GPU or CPU slice)", "mgca train"};
  std::string job;
  std::vector<std::string> overrides;
  bool dry_run = false, print_keys = false;
  app.add_option("JOB", job, "the job file (TOML; see jobs/ and docs/training.md)");
  app.add_option("--set", overrides, "override a key: --set optimizer.lr=1e-4 (dotted keys, TOML values)");
  app.add_flag("--dry-run", dry_run, "validate the job, print the resolved config and exit");
  app.add_flag("--print-keys", print_keys, "print every config key with its default as a Markdown table");
  app.footer(
      "exit codes: 0 done, 1 run-time error, 2 bad job file or command line, 75 checkpointed after "
      "SIGUSR1/SIGTERM (requeue and run again: it resumes)");
  if (const int code = parse_arguments(app, argc, argv); code >= 0) return code;
  if (print_keys) {
    fmt::print("{}", train::config_keys_markdown());
    return kExitOk;
  }
  if (job.empty()) {
    std::fprintf(stderr, "mgca train: a job file is required (run 'mgca train --help')\n");
    return kExitUsage;
  }

  train::install_preemption_handlers();  // a signal during start-up is kept for the first step
  comm::init(&argc, &argv);
  int code = kExitOk;
  try {
    // Only host messages (the job) go through the bootstrap: no NCCL
    // communicator before comm.backend is known (and none at all under "mpi").
    comm::CommOptions bootstrap_options;
    bootstrap_options.backend = comm::Backend::Mpi;
    std::shared_ptr<comm::Communicator> bootstrap = comm::Communicator::world(bootstrap_options);
    train::Config config;
    try {
      config = train::load_config_collective(job, overrides, *bootstrap);
    } catch (const comm::CollectiveError& error) {
      if (!error.echo()) std::fprintf(stderr, "mgca train: bad job: %s\n", error.message().c_str());
      comm::finalize();
      return kExitUsage;
    }
    if (dry_run) {
      if (bootstrap->rank() == 0) fmt::print("{}", train::to_toml(config));
      comm::finalize();
      return kExitOk;
    }
    auto world = comm::Communicator::world(config.comm.communicator);
    const train::RunResult result = train::run_training(config, world);
    switch (result.status) {
      case train::RunStatus::Completed:
        log::info("done: {} steps; checkpoint {}", result.step, result.checkpoint.string());
        break;
      case train::RunStatus::Stopped:
        log::info("stopped after step {} of {} (schedule.stop_after_steps); run the job again to continue",
                  result.step, result.total_steps);
        break;
      case train::RunStatus::Preempted:
        log::info("preempted at step {}: checkpoint {}; exit {} (requeue: the next run resumes)", result.step,
                  result.checkpoint.string(), kExitPreempted);
        code = kExitPreempted;
        break;
    }
  } catch (const comm::CollectiveError& error) {
    // Every rank stopped at the same point: print once, end normally.
    if (!error.echo()) std::fprintf(stderr, "mgca train: error: %s\n", error.what());
    comm::finalize();
    return kExitError;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "mgca train: error: %s\n", error.what());
    abort_job(kExitError);
  }
  comm::finalize();
  return code;
}

const Registration train_registration{"train", "pretrain MGCA or ConVIRT (under mpirun/srun)", run_train};

}  // namespace
}  // namespace mgca::cli
