// MPI process lifetime (no torch here: programs that only need ranks use it).
#pragma once

namespace mgca::comm {

// Idempotent; requests MPI_THREAD_MULTIPLE (the watchdog and the gradient-sync
// worker call MPI beside the main thread), records the rank for error
// messages (util::set_process_rank), computes the local rank and starts the
// collective watchdog. finalize() runs at exit if the program did not call it.
void init(int* argc, char*** argv);
void finalize();
bool is_initialized();

}  // namespace mgca::comm
