// One run per run folder at a time: `mgca train` holds an exclusive flock on
// `<run folder>/run.lock` for its whole life, so a second run with the same
// name fails at start instead of interleaving its checkpoints and metrics
// with the first's. The OS releases the lock when the holder exits or dies
// (no stale locks to clean up). No torch here.
#pragma once

#include <filesystem>
#include <string>

namespace mgca::train {

inline constexpr const char* kRunLockFileName = "run.lock";

class RunLock {
 public:
  // Creates `run_dir` if needed and takes the lock without waiting; the file
  // then names the holder (host, pid, start time). When another process
  // holds it: an mgca::Error naming the folder and that holder.
  explicit RunLock(const std::filesystem::path& run_dir);
  ~RunLock();  // releases the lock (the file stays: it is harmless)
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace mgca::train
