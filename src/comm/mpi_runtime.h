// MPI process state and the collective watchdog (internal to the comm module).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>

namespace mgca::comm::detail {

// The watchdog aborts the job when a registered collective outlives its
// timeout: a dead rank, a hang, or a rank that skipped a collective would
// otherwise block every other rank forever.
class CollectiveGuard {
 public:
  // `what` and `detail` must outlive the guard (string literals / members).
  CollectiveGuard(const char* what, const std::string* detail, double timeout_seconds);
  ~CollectiveGuard();
  CollectiveGuard(const CollectiveGuard&) = delete;
  CollectiveGuard& operator=(const CollectiveGuard&) = delete;

 private:
  int slot_;
};

// Exit code of a job aborted by the watchdog.
inline constexpr int kWatchdogExitCode = 1;

// MPI_Comm_split_type(SHARED) results, computed at init.
int local_rank();
int local_size();
const std::string& host_name();

// Fails with the MPI error string when `code` is not MPI_SUCCESS.
void check_mpi(int code, const char* call, const char* file, int line);

}  // namespace mgca::comm::detail

#define MGCA_MPI(call) ::mgca::comm::detail::check_mpi((call), #call, __FILE__, __LINE__)
