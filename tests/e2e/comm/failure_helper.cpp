// A small MPI job that misbehaves on purpose, for tests/e2e/comm:
//   comm_failure_helper SCENARIO TIMEOUT_SECONDS
// ok            every rank joins an all-reduce; exit 0
// skip          rank 1 never joins the all-reduce (sleeps); the others' watchdog fires
// skip-async    rank 1 never joins an asynchronous all-reduce
// die           rank 1 kills itself (SIGKILL) before the all-reduce
// other         rank 1 calls a barrier where the others all-reduce, with the
//               cross-rank check off (comm.validate = false), so MPI hangs
// mismatch      rank 1 passes another shape; the error is not caught
#include <signal.h>
#include <unistd.h>

#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "mgca/comm/communicator.h"

int main(int argc, char** argv) {
  mgca::comm::init(&argc, &argv);
  if (argc != 3) {
    std::fprintf(stderr, "usage: comm_failure_helper ok|skip|skip-async|die|mismatch|other TIMEOUT_SECONDS\n");
    return 2;
  }
  const std::string scenario = argv[1];
  mgca::comm::CommOptions options;
  options.timeout_seconds = std::atof(argv[2]);
  options.validate = scenario != "other";
  auto comm = mgca::comm::Communicator::world(options);
  const int rank = comm->rank();
  auto tensor = torch::ones({rank == 1 && scenario == "mismatch" ? 999 : 1000});
  std::printf("[rank %d] ready\n", rank);
  std::fflush(stdout);
  comm->barrier();  // every rank is up before anyone misbehaves

  if (rank == 1 && (scenario == "skip" || scenario == "skip-async")) {
    sleep(120);  // busy elsewhere: never joins
    return 0;
  }
  if (rank == 1 && scenario == "die") raise(SIGKILL);

  if (rank == 1 && scenario == "other") {
    comm->barrier();
  } else if (scenario == "skip-async") {
    comm->all_reduce_async(tensor, mgca::comm::ReduceOp::Sum)->wait();
  } else {
    comm->all_reduce(tensor, mgca::comm::ReduceOp::Sum);
  }
  std::printf("[rank %d] all_reduce done: %.0f\n", rank, tensor[0].item<double>());
  std::fflush(stdout);
  comm.reset();
  mgca::comm::finalize();
  return 0;
}
