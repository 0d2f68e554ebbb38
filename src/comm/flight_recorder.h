// The collective flight recorder (internal to the comm module; PyTorch's NCCL
// flight recorder is the model): every rank keeps a ring of its last
// collectives, and on a watchdog timeout the ranks' watchdog threads exchange
// where each one stands, so the message names the ranks and the collective
// that differ. No torch here.
//
// Channels: each communicator has a blocking and an asynchronous channel,
// numbered in creation order. Communicators are created collectively in the
// same order on every rank, so channel c and its sequence numbers (1, 2, …
// per channel) mean the same collective on every rank.
#pragma once

#include <mpi.h>

#include <array>
#include <cstdint>
#include <string>

namespace mgca::comm::detail {

// One collective as recorded (pointers to string literals / c10's static names).
struct CollectiveRecord {
  const char* op = "";      // "all_reduce", "barrier", …
  const char* dtype = "";   // "Float"; "" for the helpers without a tensor
  const char* reduce = "";  // "sum", …; "" when none
  int root = -1;            // broadcasts
  bool device = false;      // a CUDA tensor (on NCCL: finished = enqueued on the stream)
  int ndim = -1;            // -1: no shape
  std::array<int64_t, 8> dims{};
  int64_t bytes = 0;        // -1: not known on every rank (a string's length)
};

// "all_reduce Float [1000] sum, 4000 B".
std::string describe_record(const CollectiveRecord& record);

// A new channel id (collective in spirit: call in the same order on every rank).
int new_channel();

// Records a collective from construction (started) to destruction (finished).
class FlightScope {
 public:
  FlightScope(int channel, const CollectiveRecord& record);
  ~FlightScope();
  FlightScope(const FlightScope&) = delete;
  FlightScope& operator=(const FlightScope&) = delete;

 private:
  int channel_;
  int64_t seq_;
};

// Called at comm::init / finalize with the watchdog's own duplicate of
// MPI_COMM_WORLD (point-to-point only, between watchdog threads).
void flight_attach(MPI_Comm watch_comm);
void flight_detach();

// Watchdog thread, every tick: answers other ranks' requests for this rank's state.
void flight_serve_requests();

// Watchdog thread, on a timeout: asks every rank where it stands (waiting at
// most `wait_seconds` for answers) and returns the diagnosis: the collective
// this rank waits in, the ranks that wait in it too, those that have not
// called it or are elsewhere, those that did not answer, and this rank's
// last collectives. "" when nothing was recorded.
std::string flight_diagnosis(double wait_seconds);

}  // namespace mgca::comm::detail
