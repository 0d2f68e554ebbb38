// MPI process state and the collective watchdog (internal to the comm module).
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace mgca::comm::detail {

// The watchdog aborts the job when a registered collective outlives its
// timeout: a dead rank, a hang, or a rank that skipped a collective would
// otherwise block every other rank forever.
// Describes a collective for the watchdog's message. It is called only if
// the watchdog fires (on the watchdog thread, while the caller is blocked), so
// a collective that completes never pays for formatting.
using Describe = std::string (*)(const void* context);

class CollectiveGuard {
 public:
  // `what` and `detail` must outlive the guard (string literals / locals of
  // the enclosing scope); `detail` is only read if the watchdog fires.
  CollectiveGuard(const char* what, const std::string* detail, double timeout_seconds);
  // `describe(context)` gives the detail; `context` must outlive the guard.
  CollectiveGuard(const char* what, Describe describe, const void* context, double timeout_seconds);
  ~CollectiveGuard();
  CollectiveGuard(const CollectiveGuard&) = delete;
  CollectiveGuard& operator=(const CollectiveGuard&) = delete;

 private:
  int slot_;
};

// Work the host does not block on (NCCL kernels on a stream) is watched by
// polling: the watchdog calls poll() about every 200 ms.
class Monitor {
 public:
  virtual ~Monitor() = default;
  // "" when all is well; otherwise the message printed before the job is aborted.
  virtual std::string poll(std::chrono::steady_clock::time_point now) = 0;
  // Called once on every monitor just before MPI_Abort (e.g. ncclCommAbort).
  virtual void abort() noexcept = 0;
};
// remove_monitor() returns only when no poll() of that monitor is running.
void add_monitor(Monitor* monitor);
void remove_monitor(Monitor* monitor);

// Exit code of a job aborted by the watchdog (the mgca "run-time error" code).
inline constexpr int kWatchdogExitCode = 1;

// Prints `message` with the rank prefix, aborts every monitor, then the job.
[[noreturn]] void abort_job(const std::string& message);

// MPI_Comm_split_type(SHARED) results, computed at init.
int local_rank();
int local_size();
const std::string& host_name();

// Fails with the MPI error string when `code` is not MPI_SUCCESS.
void check_mpi(int code, const char* call, const char* file, int line);

}  // namespace mgca::comm::detail

#define MGCA_MPI(call) ::mgca::comm::detail::check_mpi((call), #call, __FILE__, __LINE__)
