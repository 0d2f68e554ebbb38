#include "process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "mgca/util/error.h"

namespace fs = std::filesystem;

namespace mgca::test {

Background::Background(const std::string& command, const fs::path& log) {
  pid_ = fork();
  MGCA_CHECK(pid_ >= 0, "fork failed");
  if (pid_ == 0) {
    setpgid(0, 0);
    const std::string full = "exec " + command + " > '" + log.string() + "' 2>&1";
    execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid_, pid_);
}

Background::~Background() {
  if (!done_ && pid_ > 0) {
    kill(-pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
}

bool Background::running() {
  if (done_) return false;
  const pid_t r = waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) done_ = true;
  return !done_;
}

int Background::wait(double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (WIFEXITED(status_)) return WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
  return -1;
}

namespace {
std::string read_nul_separated(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  for (char& c : s) {
    if (c == '\0') c = '\n';
  }
  return "\n" + s;
}
}  // namespace

pid_t find_rank_process(int rank, const std::vector<std::string>& markers) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string environment = read_nul_separated(entry.path() / "environ");
    if (environment.find("\nOMPI_COMM_WORLD_RANK=" + std::to_string(rank) + "\n") == std::string::npos) continue;
    const std::string command = read_nul_separated(entry.path() / "cmdline");
    bool all = command.find("mgca") != std::string::npos;
    for (const auto& marker : markers) all = all && command.find(marker) != std::string::npos;
    if (!all) continue;
    return static_cast<pid_t>(std::stol(name));
  }
  return -1;
}

}  // namespace mgca::test
