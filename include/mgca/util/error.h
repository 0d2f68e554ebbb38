// Errors with file:line and the rank that raised them.
//
// Every error the project raises is an mgca::Error whose what() reads
//   "[rank R] src/io/safetensors.cpp:120: tensor 'x': expected shape [4, 8], got [4, 9]"
// so a message from a 512-rank job says where and on which rank it happened.
// A request that is wrong in itself is a UsageError instead (below).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace mgca {

class Error : public std::runtime_error {
 public:
  Error(std::string location, std::string message, int rank);
  // "src/x.cpp:12" relative to the source tree.
  const std::string& location() const { return location_; }
  // The message alone, without rank and location.
  const std::string& message() const { return message_; }
  // The rank that raised it, -1 outside an MPI job.
  int rank() const { return rank_; }

 private:
  std::string location_;
  std::string message_;
  int rank_;
};

// A request that is wrong in itself, found after the command line was
// parsed: an option missing, or options that do not go together. Raised
// identically on every rank (they share the request); the `mgca` program
// prints it with a pointer to --help and exits 2. No file:line: the fault is
// the request's, not the code's.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace util {

// The rank printed in errors and log lines. Set by comm::init; before that
// the launcher's environment (OMPI_COMM_WORLD_RANK, PMIX_RANK, SLURM_PROCID)
// is used, and -1 when there is none.
void set_process_rank(int rank);
int process_rank();

// "src/io/x.cpp" from __FILE__: already that (-ffile-prefix-map,
// cmake/MgcaTargets.cmake) or relative to the build folder ("../../src/x.cpp").
std::string source_relative(const char* file);

namespace detail {
[[noreturn]] void raise(const char* file, int line, std::string message);
}  // namespace detail
}  // namespace util
}  // namespace mgca

// MGCA_FAIL("tensor '{}' missing", name): throw mgca::Error here.
#define MGCA_FAIL(...) ::mgca::util::detail::raise(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))

// MGCA_CHECK(cond, "format", args...): throw mgca::Error unless cond holds.
#define MGCA_CHECK(cond, ...)                       \
  do {                                              \
    if (__builtin_expect(!(cond), 0)) {             \
      MGCA_FAIL(__VA_ARGS__);                       \
    }                                               \
  } while (0)

// MGCA_USAGE_CHECK(cond, "format", args...): throw mgca::UsageError unless cond holds.
#define MGCA_USAGE_CHECK(cond, ...)                                    \
  do {                                                                 \
    if (!(cond)) throw ::mgca::UsageError(::fmt::format(__VA_ARGS__)); \
  } while (0)
