#include "support/test_support.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "mgca/build_config.h"
#include "mgca/util/error.h"

namespace fs = std::filesystem;

namespace mgca::test {

fs::path shared_data_dir() {
  const char* env = std::getenv("MGCA_SHARED_DATA");
  fs::path dir = env != nullptr ? fs::path(env) : fs::path(MGCA_SHARED_DATA_DIR_DEFAULT);
  MGCA_CHECK(fs::is_directory(dir / "golden"),
             "shared data not found at '{}' (set MGCA_SHARED_DATA)", dir.string());
  return dir;
}

fs::path source_dir() { return MGCA_SOURCE_DIR; }
fs::path binary_dir() { return MGCA_BINARY_DIR; }
fs::path mgca_program() { return binary_dir() / "src" / "cli" / "mgca"; }

TempDir::TempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  fs::path base = tmp != nullptr ? fs::path(tmp) : fs::temp_directory_path();
  std::random_device device;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path candidate = base / (prefix + "-" + std::to_string(getpid()) + "-" +
                                 std::to_string(device() % 1000000));
    if (fs::create_directory(candidate)) {
      path_ = candidate;
      return;
    }
  }
  MGCA_FAIL("cannot create a temporary directory under '{}'", base.string());
}

TempDir::~TempDir() {
  if (std::getenv("MGCA_KEEP_TEST_DIRS") != nullptr || path_.empty()) return;
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

CommandResult run_command(const std::string& command) {
  CommandResult result;
  const std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  MGCA_CHECK(pipe != nullptr, "cannot run '{}'", command);
  std::array<char, 4096> buffer{};
  size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    result.output.append(buffer.data(), n);
  }
  const int status = pclose(pipe);
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  // The output is captured, so neither ctest nor the exit status the test
  // expects (often a failure) would show a child's sanitizer report.
  if (const std::string marker = sanitizer_report_marker(result.output); !marker.empty()) {
    ADD_FAILURE() << "sanitizer report (" << marker << ") in the output of: " << command << "\n" << result.output;
  }
  return result;
}

std::string sanitizer_report_marker(const std::string& output) {
  for (const char* marker : {"ERROR: AddressSanitizer", "SUMMARY: AddressSanitizer", "ERROR: LeakSanitizer",
                             "SUMMARY: UndefinedBehaviorSanitizer", ": runtime error: "}) {
    if (output.find(marker) != std::string::npos) return marker;
  }
  return "";
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  MGCA_CHECK(in.good(), "cannot read '{}'", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  MGCA_CHECK(out.good(), "cannot write '{}'", path.string());
  out << text;
}

std::string python() { return MGCA_PYTHON; }

}  // namespace mgca::test
