// RunLock: a second holder of the same run folder fails with an error naming
// the folder and the first holder's pid; the OS releases the lock when the
// holder dies (SIGKILL), so the folder is usable again at once.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "mgca/train/run_lock.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::train {
namespace {

TEST(RunLock, SecondHolderFailsNamingTheFolderAndTheHolderUntilTheHolderDies) {
  test::TempDir dir("mgca-run-lock");
  const auto run = dir / "runs" / "demo";
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // the first run: takes the lock, reports, then waits to be killed
    RunLock lock(run);
    const char byte = 1;
    [[maybe_unused]] const ssize_t written = write(ready[1], &byte, 1);
    while (true) pause();
  }
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  try {
    RunLock second(run);
    ADD_FAILURE() << "a second lock of the same run folder succeeded";
  } catch (const Error& error) {
    const std::string text = error.what();
    EXPECT_NE(text.find("the run folder '" + run.string() + "' is in use by another run"), std::string::npos) << text;
    EXPECT_NE(text.find("pid " + std::to_string(child) + " "), std::string::npos) << text;
  }
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_NO_THROW(RunLock again(run));  // released by the OS with the dead holder
  close(ready[0]);
  close(ready[1]);
}

}  // namespace
}  // namespace mgca::train
