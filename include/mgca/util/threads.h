// Worker threads of one rank: how many, and one loop that spreads work over
// them. Local to the calling rank (no collectives).
#pragma once

#include <cstdint>
#include <functional>

namespace mgca::util {

// The one thread-count rule of every program: `requested` when positive,
// else $OMP_NUM_THREADS when set to a positive number, else the host's cores
// divided by the ranks on the host; at least 1.
int choose_thread_count(int requested, int ranks_on_host);

// Calls body(k) for every k in [0, count) on `threads` threads (thread t takes
// k = t, t + threads, …) and returns when all are done. An exception thrown by
// a body is rethrown here once every thread has finished.
void parallel_for(int threads, int64_t count, const std::function<void(int64_t)>& body);

}  // namespace mgca::util
