// Logging: rank 0 prints progress, every rank may print warnings and errors.
//
//   log::info("step {} loss {:.4f}", step, loss);   // rank 0 only, stdout
//   log::warn("slow collective: {:.1f} s", s);      // any rank, stderr, "[rank r] " prefix
//   log::all("host {} device {}", host, device);    // every rank, stdout, prefixed
//
// Lines are written whole under a mutex, so threads never interleave within a line.
#pragma once

#include <fmt/format.h>

#include <string>

namespace mgca::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

// Messages below this level are dropped. Default Info; env MGCA_LOG_LEVEL
// (debug|info|warn|error|off) overrides it at start-up.
void set_level(Level level);
Level level();

namespace detail {
void write(Level level, bool rank0_only, bool prefix_rank, const std::string& line);
}

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  detail::write(Level::Debug, false, true, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  detail::write(Level::Info, true, false, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void all(fmt::format_string<Args...> f, Args&&... args) {
  detail::write(Level::Info, false, true, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  detail::write(Level::Warn, false, true, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  detail::write(Level::Error, false, true, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace mgca::log
