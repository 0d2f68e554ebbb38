#include "mgca/util/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "mgca/util/error.h"

namespace mgca::util {

Progress::Progress(std::string label, int64_t total, int64_t first, double plain_interval_s)
    : label_(std::move(label)),
      total_(total),
      first_(first),
      plain_interval_s_(plain_interval_s),
      terminal_(isatty(STDERR_FILENO) == 1),
      enabled_(process_rank() <= 0) {}

std::string Progress::format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string Progress::line(int64_t done, const std::string& status) const {
  const double elapsed = watch_.seconds();
  const double rate = elapsed > 0 ? static_cast<double>(done - first_) / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : -1.0;
  const double fraction = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  std::string head;
  if (terminal_) {
    constexpr int kWidth = 24;
    const int filled = std::clamp(static_cast<int>(fraction * kWidth), 0, kWidth);
    head = fmt::format("{} [{}{}]", label_, std::string(filled, '#'), std::string(kWidth - filled, '.'));
  } else {
    head = label_;
  }
  return fmt::format("{} {}/{} ({:.1f}%) {:.2f} it/s ETA {} {}", head, done, total_,
                     100.0 * fraction, rate, format_duration(eta), status);
}

void Progress::update(int64_t done, const std::string& status) {
  if (!enabled_) return;
  last_done_ = done;
  const double now = watch_.seconds();
  const double interval = terminal_ ? 0.2 : plain_interval_s_;
  if (now - last_print_s_ < interval) return;
  last_print_s_ = now;
  if (terminal_) {
    std::fprintf(stderr, "\r%s\033[K", line(done, status).c_str());
  } else {
    std::fprintf(stderr, "%s\n", line(done, status).c_str());
  }
  std::fflush(stderr);
}

void Progress::finish(const std::string& status) {
  if (!enabled_) return;
  std::fprintf(stderr, terminal_ ? "\r%s\033[K\n" : "%s\n", line(last_done_, status).c_str());
  std::fflush(stderr);
}

}  // namespace mgca::util
