// SIGUSR1 / SIGTERM / SIGINT handling (no torch). SLURM sends SIGUSR1 before a job's
// time limit (`--signal=USR1@120`) and SIGTERM on scancel or preemption; the
// handler only records the signal, and the trainer makes every rank agree at
// the next step (Communicator::any), writes a checkpoint and exits with
// cli::kExitPreempted (75) so that the sbatch script requeues the job.
// SIGINT (Ctrl-C) does the same once; its handler then reverts to the
// default, so a second Ctrl-C ends the process at once. Under mpirun, use
// scripts/mpirun-preemptible to see the 75 (docs/training.md).
#pragma once

namespace mgca::train {

// Installs the handlers (idempotent, async-signal-safe: they set a flag).
void install_preemption_handlers();
// The signal this process received since the last reset (0 when none).
int preemption_signal();
bool preemption_requested();
// Forgets a received signal (tests; a process that runs several trainings).
void reset_preemption();

}  // namespace mgca::train
