#include "mgca/util/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "mgca/util/error.h"

namespace fs = std::filesystem;

namespace mgca::util {
namespace {

std::string errno_text() { return std::strerror(errno); }

fs::path folder_of(const fs::path& path) { return path.has_parent_path() ? path.parent_path() : fs::path("."); }

}  // namespace

std::string file_problem(const fs::path& path) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (fs::is_regular_file(status)) return "";
  if (!fs::exists(status)) return "does not exist";
  if (fs::is_directory(status)) return "is a folder, not a file";
  return "is not a regular file";
}

std::string folder_problem(const fs::path& path) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (fs::is_directory(status)) return "";
  if (!fs::exists(status)) return "does not exist";
  return "is a file, not a folder";
}

std::string read_file(const fs::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  MGCA_CHECK(in.good(), "cannot read {} '{}': {}", what, path.string(), errno_text());
  std::ostringstream text;
  text << in.rdbuf();
  MGCA_CHECK(!in.bad(), "reading {} '{}' failed: {}", what, path.string(), errno_text());
  return text.str();
}

void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MGCA_CHECK(fd >= 0, "cannot open '{}' to fsync it: {}", path.string(), errno_text());
  const int result = ::fsync(fd);
  const std::string error = errno_text();
  ::close(fd);
  MGCA_CHECK(result == 0, "fsync of '{}' failed: {}", path.string(), error);
}

void commit_file(const fs::path& temp, const fs::path& path) {
  try {
    fsync_path(temp);
    MGCA_CHECK(::rename(temp.c_str(), path.c_str()) == 0, "renaming '{}' to '{}' failed: {}", temp.string(),
               path.string(), errno_text());
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  fsync_path(folder_of(path));
}

void write_file_atomic(const fs::path& path, std::string_view bytes) {
  const fs::path temp = path.string() + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MGCA_CHECK(fd >= 0, "cannot create '{}': {}", temp.string(), errno_text());
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string error = errno_text();
      ::close(fd);
      ::unlink(temp.c_str());
      MGCA_FAIL("writing '{}' failed: {}", temp.string(), error);
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    const std::string error = errno_text();
    ::unlink(temp.c_str());
    MGCA_FAIL("closing '{}' failed: {}", temp.string(), error);
  }
  commit_file(temp, path);
}

}  // namespace mgca::util
