// The exit status of a test program as ctest reads it (tests/CMakeLists.txt,
// cmake/MgcaDiscoverTests.cmake: SKIP_RETURN_CODE).
#pragma once

#include <gtest/gtest.h>

namespace mgca::test {

inline constexpr int kSkipExitCode = 77;

// True when at least one test ran and every test that ran was skipped.
inline bool all_tests_skipped() {
  const auto* unit = ::testing::UnitTest::GetInstance();
  return unit->test_to_run_count() > 0 && unit->skipped_test_count() == unit->test_to_run_count();
}

inline int exit_code(bool failed, bool skipped) {
  if (failed) return 1;
  return skipped ? kSkipExitCode : 0;
}

}  // namespace mgca::test
