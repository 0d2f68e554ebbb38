#include "mgca/util/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "mgca/util/error.h"

namespace mgca::log {
namespace {
Level level_from_environment() {
  const char* value = std::getenv("MGCA_LOG_LEVEL");
  if (value == nullptr) return Level::Info;
  if (std::strcmp(value, "debug") == 0) return Level::Debug;
  if (std::strcmp(value, "warn") == 0) return Level::Warn;
  if (std::strcmp(value, "error") == 0) return Level::Error;
  if (std::strcmp(value, "off") == 0) return Level::Off;
  return Level::Info;
}

std::atomic<Level> g_level{level_from_environment()};
std::mutex g_mutex;
}  // namespace

void set_level(Level level) { g_level.store(level); }
Level level() { return g_level.load(); }

namespace detail {
void write(Level message_level, bool rank0_only, bool prefix_rank, const std::string& line) {
  if (message_level < g_level.load()) return;
  const int rank = util::process_rank();
  if (rank0_only && rank > 0) return;
  FILE* stream = message_level >= Level::Warn ? stderr : stdout;
  const char* tag = message_level == Level::Warn    ? "warning: "
                    : message_level == Level::Error ? "error: "
                                                    : "";
  std::lock_guard<std::mutex> lock(g_mutex);
  if (prefix_rank && rank >= 0) {
    std::fprintf(stream, "[rank %d] %s%s\n", rank, tag, line.c_str());
  } else {
    std::fprintf(stream, "%s%s\n", tag, line.c_str());
  }
  std::fflush(stream);
}
}  // namespace detail
}  // namespace mgca::log
