// The preemption handlers record SIGUSR1, SIGTERM and a first SIGINT instead
// of ending the process; after one SIGINT its default action is back.
#include <gtest/gtest.h>

#include <csignal>

#include "mgca/train/preemption.h"

namespace mgca::train {
namespace {

TEST(Preemption, HandlersRecordTheSignal) {
  install_preemption_handlers();
  reset_preemption();
  EXPECT_FALSE(preemption_requested());
  for (int signal : {SIGUSR1, SIGTERM}) {
    std::raise(signal);  // would end the process without the handler
    EXPECT_TRUE(preemption_requested());
    EXPECT_EQ(preemption_signal(), signal);
    reset_preemption();
    EXPECT_EQ(preemption_signal(), 0);
  }
  std::raise(SIGINT);
  EXPECT_EQ(preemption_signal(), SIGINT);
  struct sigaction now {};
  sigaction(SIGINT, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL);  // a second Ctrl-C would end the process
  install_preemption_handlers();
  reset_preemption();
}

}  // namespace
}  // namespace mgca::train
