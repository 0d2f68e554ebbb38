#include "mpi_runtime.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "mgca/comm/runtime.h"
#include "mgca/util/error.h"

namespace mgca::comm {
namespace {

struct Slot {
  bool used = false;
  const char* what = nullptr;
  const std::string* detail = nullptr;
  double timeout_seconds = 0;
  std::chrono::steady_clock::time_point start;
};

// A fixed table: at most a handful of threads are inside collectives at once.
constexpr int kSlots = 64;

struct Runtime {
  std::mutex mutex;
  std::condition_variable stop_signal;
  std::array<Slot, kSlots> slots;
  std::thread watchdog;
  bool stopping = false;
  bool initialized_by_us = false;
  int local_rank = 0;
  int local_size = 1;
  std::string host;
};

Runtime& runtime() {
  static Runtime* instance = new Runtime();  // never destroyed: used from atexit
  return *instance;
}

void watchdog_loop() {
  Runtime& rt = runtime();
  std::unique_lock<std::mutex> lock(rt.mutex);
  while (!rt.stopping) {
    rt.stop_signal.wait_for(lock, std::chrono::milliseconds(200));
    const auto now = std::chrono::steady_clock::now();
    for (const Slot& slot : rt.slots) {
      if (!slot.used) continue;
      const double waited = std::chrono::duration<double>(now - slot.start).count();
      if (waited <= slot.timeout_seconds) continue;
      std::fprintf(stderr,
                   "[rank %d] mgca watchdog: collective %s %s did not finish within %.0f s "
                   "(a rank died, hangs, or skipped this collective); aborting the job\n",
                   util::process_rank(), slot.what, slot.detail ? slot.detail->c_str() : "",
                   slot.timeout_seconds);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, detail::kWatchdogExitCode);
      std::_Exit(detail::kWatchdogExitCode);
    }
  }
}

void finalize_at_exit() { finalize(); }

}  // namespace

void init(int* argc, char*** argv) {
  int already = 0;
  MPI_Initialized(&already);
  Runtime& rt = runtime();
  if (!already) {
    int provided = 0;
    MGCA_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
    MGCA_CHECK(provided >= MPI_THREAD_MULTIPLE,
               "MPI provides thread level {} but MPI_THREAD_MULTIPLE ({}) is needed "
               "(the watchdog and the gradient-sync thread call MPI)",
               provided, static_cast<int>(MPI_THREAD_MULTIPLE));
    rt.initialized_by_us = true;
    std::atexit(finalize_at_exit);
  }
  int rank = 0;
  MGCA_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  util::set_process_rank(rank);
  // Errors come back as codes so they carry our file:line and rank.
  MGCA_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));

  MPI_Comm local = MPI_COMM_NULL;
  MGCA_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local));
  MGCA_MPI(MPI_Comm_rank(local, &rt.local_rank));
  MGCA_MPI(MPI_Comm_size(local, &rt.local_size));
  MPI_Comm_free(&local);
  std::array<char, 256> name{};
  gethostname(name.data(), name.size() - 1);
  rt.host = name.data();

  std::lock_guard<std::mutex> lock(rt.mutex);
  if (!rt.watchdog.joinable()) {
    rt.stopping = false;
    rt.watchdog = std::thread(watchdog_loop);
  }
}

void finalize() {
  Runtime& rt = runtime();
  {
    std::lock_guard<std::mutex> lock(rt.mutex);
    rt.stopping = true;
  }
  rt.stop_signal.notify_all();
  if (rt.watchdog.joinable()) rt.watchdog.join();
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized && rt.initialized_by_us) MPI_Finalize();
}

bool is_initialized() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

namespace detail {

CollectiveGuard::CollectiveGuard(const char* what, const std::string* detail, double timeout_seconds) {
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  for (int i = 0; i < kSlots; ++i) {
    if (!rt.slots[i].used) {
      rt.slots[i] = Slot{true, what, detail, timeout_seconds, std::chrono::steady_clock::now()};
      slot_ = i;
      return;
    }
  }
  MGCA_FAIL("more than {} collectives in flight at once", kSlots);
}

CollectiveGuard::~CollectiveGuard() {
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  rt.slots[slot_].used = false;
}

int local_rank() { return runtime().local_rank; }
int local_size() { return runtime().local_size; }
const std::string& host_name() { return runtime().host; }

void check_mpi(int code, const char* call, const char* file, int line) {
  if (code == MPI_SUCCESS) return;
  std::array<char, MPI_MAX_ERROR_STRING> text{};
  int length = 0;
  MPI_Error_string(code, text.data(), &length);
  util::detail::raise(file, line, fmt::format("{} failed: {}", call, std::string(text.data(), length)));
}

}  // namespace detail
}  // namespace mgca::comm
