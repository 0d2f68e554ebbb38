// Errors that every rank raises together (no torch).
#pragma once

#include <exception>
#include <string>

#include "mgca/util/error.h"

namespace mgca::comm {

// An error raised on every rank at the same point of the run (a rejected job
// file, a NaN loss, a checkpoint that could not be written): the program can
// print it once and end normally on every rank instead of aborting the job.
// `echo` marks the copies on ranks that only learned of the failure from
// another rank (or hold the same message as rank 0): programs print the
// errors that are not echoes, so the message appears once per cause.
class CollectiveError : public mgca::Error {
 public:
  CollectiveError(std::string location, std::string message, int rank, bool echo)
      : mgca::Error(std::move(location), std::move(message), rank), echo_(echo) {}
  bool echo() const { return echo_; }

 private:
  bool echo_;
};

namespace detail {
[[noreturn]] void raise_collective(const char* file, int line, bool echo, std::string message);
}  // namespace detail

}  // namespace mgca::comm

// As MGCA_FAIL, raising comm::CollectiveError: use only where every rank
// fails at the same point. MGCA_COLLECTIVE_FAIL(echo, "format", args...).
#define MGCA_COLLECTIVE_FAIL(echo, ...) \
  ::mgca::comm::detail::raise_collective(__FILE__, __LINE__, (echo), ::fmt::format(__VA_ARGS__))
