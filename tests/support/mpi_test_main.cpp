// main() for the mpi test programs: every rank runs every test; rank 0
// prints the usual GoogleTest output, other ranks print only their failures
// (prefixed with the rank); the job fails when any rank fails, and exits
// kSkipExitCode (support/skip_exit.h) when every rank skipped everything.
// --gtest_list_tests (test discovery, outside mpirun) needs no MPI.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "mgca/comm/runtime.h"
#include "support/skip_exit.h"

namespace {

class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 result.file_name() ? result.file_name() : "?", result.line_number(), result.summary());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (::testing::GTEST_FLAG(list_tests)) return RUN_ALL_TESTS();
  mgca::comm::init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
  }
  int local[2] = {RUN_ALL_TESTS() != 0 ? 1 : 0, mgca::test::all_tests_skipped() ? 1 : 0};
  int any_failed = 0;
  int all_skipped = 0;
  MPI_Allreduce(&local[0], &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(&local[1], &all_skipped, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  mgca::comm::finalize();
  return mgca::test::exit_code(any_failed != 0, all_skipped != 0);
}
