#include "mgca/util/error.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace mgca {

Error::Error(std::string location, std::string message, int rank)
    : std::runtime_error(rank >= 0 ? fmt::format("[rank {}] {}: {}", rank, location, message)
                                   : fmt::format("{}: {}", location, message)),  // no "[rank -1]" outside MPI
      location_(std::move(location)),
      message_(std::move(message)),
      rank_(rank) {}

namespace util {
namespace {
std::atomic<int> g_rank{-2};  // -2: not set yet, look at the environment

int rank_from_environment() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* value = std::getenv(name)) return std::atoi(value);
  }
  return -1;
}
}  // namespace

void set_process_rank(int rank) { g_rank.store(rank); }

int process_rank() {
  int rank = g_rank.load();
  if (rank == -2) {
    rank = rank_from_environment();
    g_rank.store(rank);
  }
  return rank;
}

std::string source_relative(const char* file) {
  // The build maps the source tree's prefix away (-ffile-prefix-map), so no
  // clone's path is compiled in; a compiler cache (scripts/build) hands the
  // compiler paths relative to the build folder: "../../src/x.cpp".
  while (std::strncmp(file, "../", 3) == 0) file += 3;
  return file;
}

namespace detail {
void raise(const char* file, int line, std::string message) {
  throw Error(fmt::format("{}:{}", source_relative(file), line), std::move(message),
              process_rank());
}
}  // namespace detail
}  // namespace util
}  // namespace mgca
