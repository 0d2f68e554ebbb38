// The test set-up: one ctest entry per GoogleTest test, a skip reported
// alone, and a failure beside a skip failing the run (tests/CMakeLists.txt,
// cmake/MgcaDiscoverTests.cmake).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "support/test_support.h"

namespace mgca::test {
namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) ADD_FAILURE() << name << " is not set (tests/unit/setup/CMakeLists.txt sets it)";
  return value ? value : "";
}

// Registers `program` as ctest does for every suite, in a folder of its own,
// and runs ctest there.
CommandResult register_and_run(const TempDir& dir, const std::string& program, const std::string& np) {
  write_text_file(dir / "properties", "LABELS [==[unit]==] TIMEOUT 120");
  const std::string discover = env("MGCA_CMAKE") + " -D PROGRAM=" + program + " -D OUTPUT=" +
                               (dir / "fixture_tests.cmake").string() + " -D NAME=fixture" +
                               " '-D LAUNCHER=" + (np.empty() ? "" : env("MGCA_MPIRUN_LINE")) + "'" +
                               " '-D NP=" + np + "' -D PROPERTIES_FILE=" + (dir / "properties").string() +
                               " -P " + (source_dir() / "cmake/MgcaDiscoverTests.cmake").string() + " 2>&1";
  // The launcher arrives as one string with spaces; the script wants a list.
  std::string command = discover;
  for (std::size_t i = command.find("LAUNCHER="); i != std::string::npos && i < command.find("' '-D NP"); ++i) {
    if (command[i] == ' ') command[i] = ';';
  }
  const auto listed = run_command(command);
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  write_text_file(dir / "CTestTestfile.cmake", "include(fixture_tests.cmake)\n");
  return run_command("cd " + dir.path().string() + " && " + env("MGCA_CTEST") + " --output-on-failure 2>&1");
}

TEST(TestSetup, FailureBesideSkipFailsTheRun) {
  TempDir dir("mgca-setup");
  const auto run = register_and_run(dir, env("MGCA_SETUP_FIXTURE"), "");
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("fixture.Fixture.Passes ...."), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("fixture.Fixture.Fails ...."), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("***Skipped"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("1 tests failed out of 3"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("fixture.Fixture.Fails (Failed)"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("fixture.Fixture.Skips (Skipped)"), std::string::npos) << run.output;
}

TEST(TestSetup, MpiFailureOnOneRankBesideSkipFailsTheRun) {
  TempDir dir("mgca-setup-mpi");
  const auto run = register_and_run(dir, env("MGCA_SETUP_FIXTURE_MPI"), "2");
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("1 tests failed out of 3"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("fixture_np2.Fixture.Fails (Failed)"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("fixture_np2.Fixture.Skips (Skipped)"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace mgca::test
