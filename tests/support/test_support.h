// Helpers shared by the test suites (no torch here; see tensor_checks.h).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "mgca/util/error.h"

namespace mgca::test {

// ../shared/data, or $MGCA_SHARED_DATA. Fails the test loudly when missing:
// tests that need real data must never pass by skipping.
std::filesystem::path shared_data_dir();
std::filesystem::path source_dir();
std::filesystem::path binary_dir();
// The built `mgca` program.
std::filesystem::path mgca_program();
// The venv's Python (scripts/install-deps: torch 2.11 and the real
// implementations) that runs every Python reference.
std::string python();

// A fresh directory under $TMPDIR, removed (with its contents) on destruction
// unless MGCA_KEEP_TEST_DIRS is set.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "mgca-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;  // the process's exit status, 128+N when killed by signal N
  std::string output;  // stdout and stderr together
};

// Runs `command` through /bin/sh, capturing stdout+stderr. A sanitizer
// report in that output (a child built with debug-asan) fails the test.
CommandResult run_command(const std::string& command);

// The first sanitizer report marker (ASan, LSan, UBSan) found in `output`,
// or "". The ctest entries match the same markers (tests/CMakeLists.txt).
std::string sanitizer_report_marker(const std::string& output);

// `text` in single quotes, for a /bin/sh command line (paths without quotes).
inline std::string quote(const std::string& text) { return "'" + text + "'"; }
inline std::string quote(const std::filesystem::path& path) { return quote(path.string()); }

// What the mgca::Error that `f` throws says (what(): location, rank and
// message), or "" when it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string read_text_file(const std::filesystem::path& path);
void write_text_file(const std::filesystem::path& path, const std::string& text);

}  // namespace mgca::test
