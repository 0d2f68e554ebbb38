// main() for the test programs that are not MPI programs. GoogleTest exits 0
// when a test skips; ctest runs one test per process (tests/CMakeLists.txt),
// so a run in which every test skipped and none failed exits
// kSkipExitCode, which ctest reports as "skipped" for that test alone.
#include <gtest/gtest.h>

#include "support/skip_exit.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  return mgca::test::exit_code(rc != 0, mgca::test::all_tests_skipped());
}
