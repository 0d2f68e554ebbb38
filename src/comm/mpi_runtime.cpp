#include "mpi_runtime.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "flight_recorder.h"
#include "mgca/comm/runtime.h"
#include "mgca/util/error.h"

namespace mgca::comm {
namespace {

struct Slot {
  bool used = false;
  const char* what = nullptr;
  detail::Describe describe = nullptr;
  const void* context = nullptr;
  double timeout_seconds = 0;
  std::chrono::steady_clock::time_point start;
};

// A fixed table: at most a handful of threads are inside collectives at once.
constexpr int kSlots = 64;

struct Runtime {
  std::mutex mutex;  // slots, stopping, watchdog
  std::condition_variable stop_signal;
  std::array<Slot, kSlots> slots;
  std::thread watchdog;
  bool stopping = false;
  bool initialized_by_us = false;
  int local_rank = 0;
  int local_size = 1;
  std::string host;
  MPI_Comm watch_comm = MPI_COMM_NULL;  // the watchdog threads' own (flight recorder exchange)
  std::mutex monitors_mutex;  // held while polling, so remove_monitor waits for a running poll
  std::vector<detail::Monitor*> monitors;
};

Runtime& runtime() {
  static Runtime* instance = new Runtime();  // never destroyed: used from atexit
  return *instance;
}

// The message for the first guarded collective past its timeout, or "".
std::string overdue_collective(Runtime& rt, std::chrono::steady_clock::time_point now) {
  for (const Slot& slot : rt.slots) {
    if (!slot.used) continue;
    const double waited = std::chrono::duration<double>(now - slot.start).count();
    if (waited <= slot.timeout_seconds) continue;
    const std::string detail = slot.describe ? slot.describe(slot.context) : std::string();
    return fmt::format(
        "collective {}{}{} did not finish within {:g} s (a rank died, hangs, or skipped this "
        "collective)",
        slot.what, detail.empty() ? "" : " ", detail, slot.timeout_seconds);
  }
  return {};
}

void watchdog_loop() {
  Runtime& rt = runtime();
  for (;;) {
    std::string message;
    {
      std::unique_lock<std::mutex> lock(rt.mutex);
      rt.stop_signal.wait_for(lock, std::chrono::milliseconds(200));
      if (rt.stopping) return;
      message = overdue_collective(rt, std::chrono::steady_clock::now());
    }
    detail::flight_serve_requests();
    if (message.empty()) {
      std::lock_guard<std::mutex> lock(rt.monitors_mutex);
      const auto now = std::chrono::steady_clock::now();
      for (detail::Monitor* monitor : rt.monitors) {
        message = monitor->poll(now);
        if (!message.empty()) break;
      }
    }
    if (!message.empty()) detail::abort_job(message);
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
    MGCA_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &rt.watch_comm));
    detail::flight_attach(rt.watch_comm);
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
  if (rt.watch_comm != MPI_COMM_NULL) {
    detail::flight_detach();
    if (initialized && !finalized) MPI_Comm_free(&rt.watch_comm);
    rt.watch_comm = MPI_COMM_NULL;
  }
  if (initialized && !finalized && rt.initialized_by_us) MPI_Finalize();
}

bool is_initialized() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

namespace detail {

namespace {
std::string describe_string(const void* context) { return *static_cast<const std::string*>(context); }
}  // namespace

CollectiveGuard::CollectiveGuard(const char* what, const std::string* detail, double timeout_seconds)
    : CollectiveGuard(what, detail ? &describe_string : nullptr, detail, timeout_seconds) {}

CollectiveGuard::CollectiveGuard(const char* what, Describe describe, const void* context, double timeout_seconds) {
  Runtime& rt = runtime();
  const auto start = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(rt.mutex);
  for (int i = 0; i < kSlots; ++i) {
    if (!rt.slots[i].used) {
      rt.slots[i] = Slot{true, what, describe, context, timeout_seconds, start};
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

void add_monitor(Monitor* monitor) {
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.monitors_mutex);
  rt.monitors.push_back(monitor);
}

void remove_monitor(Monitor* monitor) {
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.monitors_mutex);
  rt.monitors.erase(std::remove(rt.monitors.begin(), rt.monitors.end(), monitor), rt.monitors.end());
}

void abort_job(const std::string& message) {
  // The other ranks' watchdog threads answer within a tick (0.2 s) unless dead.
  const std::string diagnosis = flight_diagnosis(2.0);
  std::fprintf(stderr, "[rank %d] mgca watchdog: %s; aborting the job%s\n", util::process_rank(),
               message.c_str(), diagnosis.c_str());
  std::fflush(stderr);
  Runtime& rt = runtime();
  // try_lock: abort_job may run while another thread is stuck holding the lock.
  std::unique_lock<std::mutex> lock(rt.monitors_mutex, std::try_to_lock);
  for (Monitor* monitor : rt.monitors) monitor->abort();
  MPI_Abort(MPI_COMM_WORLD, kWatchdogExitCode);
  std::_Exit(kWatchdogExitCode);
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
