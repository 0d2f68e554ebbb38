// Background processes for the e2e tests: start a shell command with its
// output in a file, wait with a timeout, signal one rank of an mpirun job.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace mgca::test {

class Background {
 public:
  // Runs `command` through /bin/sh in its own process group; stdout and stderr go to `log`.
  Background(const std::string& command, const std::filesystem::path& log);
  ~Background();  // kills the group if still running
  pid_t pid() const { return pid_; }
  // Waits up to `seconds`; returns the exit code (128+N for signal N), or -1 on timeout.
  int wait(double seconds);
  bool running();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool done_ = false;
};

// The pid of the process whose environment has OMPI_COMM_WORLD_RANK=rank and
// whose command line contains every one of `markers` (e.g. the run's output
// folder and name); -1 if none.
pid_t find_rank_process(int rank, const std::vector<std::string>& markers);

}  // namespace mgca::test
