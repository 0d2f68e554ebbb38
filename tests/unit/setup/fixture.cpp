// A fixture for unit_setup: one test passes, one fails, one skips. In the
// MPI build the failure happens on the last rank only and the skip on every
// rank, as a real MPI test could. Never registered with ctest on its own.
#include <gtest/gtest.h>

#include <cstdlib>

#ifdef MGCA_FIXTURE_MPI
#include <mpi.h>
#endif

namespace {

bool is_last_rank() {
#ifdef MGCA_FIXTURE_MPI
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return rank == size - 1;
#else
  return true;
#endif
}

TEST(Fixture, Passes) { EXPECT_EQ(1 + 1, 2); }

TEST(Fixture, Fails) {
  if (is_last_rank()) ADD_FAILURE() << "the fixture's failing test";
}

TEST(Fixture, Skips) { GTEST_SKIP() << "the fixture's skipped test"; }

}  // namespace
