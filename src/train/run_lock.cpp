#include "mgca/train/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "mgca/util/error.h"

namespace fs = std::filesystem;

namespace mgca::train {
namespace {

std::string holder_text() {
  std::array<char, 256> host{};
  gethostname(host.data(), host.size() - 1);
  const std::time_t now = std::time(nullptr);
  std::array<char, 64> when{};
  std::strftime(when.data(), when.size(), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  return fmt::format("host {} pid {} since {}", host.data(), ::getpid(), when.data());
}

std::string read_holder(int fd) {
  std::array<char, 512> text{};
  const ssize_t got = ::pread(fd, text.data(), text.size() - 1, 0);
  std::string holder = got > 0 ? std::string(text.data(), static_cast<size_t>(got)) : std::string();
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
  return holder.empty() ? "a process that has not written its name yet" : holder;
}

}  // namespace

RunLock::RunLock(const fs::path& run_dir) {
  std::error_code error;
  fs::create_directories(run_dir, error);
  MGCA_CHECK(!error, "cannot create the run folder '{}': {}", run_dir.string(), error.message());
  const fs::path path = run_dir / kRunLockFileName;
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  MGCA_CHECK(fd_ >= 0, "cannot open the run lock '{}': {}", path.string(), std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int code = errno;
    const std::string holder = code == EWOULDBLOCK ? read_holder(fd_) : std::string();
    ::close(fd_);
    fd_ = -1;
    MGCA_CHECK(code != EWOULDBLOCK,
               "the run folder '{}' is in use by another run ({}; lock file '{}'): give this run another name "
               "(--set name=...) or wait for that one to end",
               run_dir.string(), holder, path.string());
    MGCA_FAIL("cannot lock '{}': {}", path.string(), std::strerror(code));
  }
  const std::string holder = holder_text() + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] const ssize_t written = ::pwrite(fd_, holder.data(), holder.size(), 0);
  }
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
}

}  // namespace mgca::train
