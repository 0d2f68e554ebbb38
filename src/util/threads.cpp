#include "mgca/util/threads.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "mgca/util/error.h"

namespace mgca::util {

int choose_thread_count(int requested, int ranks_on_host) {
  if (requested > 0) return requested;
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int from_env = std::atoi(env);
    if (from_env > 0) return from_env;
  }
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, ranks_on_host));
}

void parallel_for(int threads, int64_t count, const std::function<void(int64_t)>& body) {
  MGCA_CHECK(threads >= 1, "parallel_for: threads must be at least 1, got {}", threads);
  std::vector<std::thread> pool;
  std::exception_ptr failure;
  std::mutex failure_mutex;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        for (int64_t k = t; k < count; k += threads) body(k);
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
    });
  }
  for (auto& thread : pool) thread.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace mgca::util
