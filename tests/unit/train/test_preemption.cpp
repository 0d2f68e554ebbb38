// The preemption handlers record SIGUSR1 and SIGTERM instead of ending the process.
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
}

}  // namespace
}  // namespace mgca::train
