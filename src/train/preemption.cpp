#include "mgca/train/preemption.h"

#include <csignal>

namespace mgca::train {
namespace {

volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_preemption_signal(int signal) { g_signal = signal; }

}  // namespace

void install_preemption_handlers() {
  struct sigaction action {};
  action.sa_handler = on_preemption_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // interrupted reads and waits continue
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  // Ctrl-C checkpoints too; a second Ctrl-C ends the process at once.
  action.sa_flags |= SA_RESETHAND;
  sigaction(SIGINT, &action, nullptr);
}

int preemption_signal() { return g_signal; }
bool preemption_requested() { return g_signal != 0; }
void reset_preemption() { g_signal = 0; }

}  // namespace mgca::train
