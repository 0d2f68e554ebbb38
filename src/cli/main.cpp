// mgca: the command-line entry point. Dispatches to the registered subcommands.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "command.h"
#include "mgca/build_config.h"
#include "mgca/comm/collective_error.h"
#include "mgca/util/error.h"
#include "mgca/util/host_memory.h"

namespace {

void print_usage(FILE* stream) {
  std::fprintf(stream,
               "mgca %s: distributed MGCA / ConVIRT image-report pretraining\n\n"
               "usage: mgca <command> [options]   (mgca <command> --help for its options)\n\n"
               "commands:\n",
               MGCA_VERSION);
  for (const auto& [name, command] : mgca::cli::commands()) {
    std::fprintf(stream, "  %-10s %s\n", name.c_str(), command.summary.c_str());
  }
  std::fprintf(stream, "\nexit codes: 0 ok, 1 run-time error, 2 usage error, "
                       "75 checkpointed after a preemption signal (requeue)\n");
}

}  // namespace

int main(int argc, char** argv) {
  mgca::util::retain_freed_host_memory();
  if (argc < 2) {
    print_usage(stderr);
    return mgca::cli::kExitUsage;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(stdout);
    return mgca::cli::kExitOk;
  }
  if (name == "--version") {
    std::printf("mgca %s\n", MGCA_VERSION);
    return mgca::cli::kExitOk;
  }
  const auto& table = mgca::cli::commands();
  const auto found = table.find(name);
  if (found == table.end()) {
    std::fprintf(stderr, "mgca: unknown command '%s'; run 'mgca --help' for the list\n",
                 name.c_str());
    return mgca::cli::kExitUsage;
  }
  std::string program = "mgca " + name;
  argv[1] = program.data();
  try {
    return found->second.run(argc - 1, argv + 1);
  } catch (const mgca::UsageError& error) {
    std::fprintf(stderr, "mgca %s: %s\nrun 'mgca %s --help' for the options\n", name.c_str(), error.what(),
                 name.c_str());
    return mgca::cli::kExitUsage;
  } catch (const mgca::comm::CollectiveError& error) {
    // Every rank failed at the same point (mgca eval's checks, for one): print once.
    if (!error.echo()) std::fprintf(stderr, "mgca %s: error: %s\n", name.c_str(), error.what());
    return mgca::cli::kExitError;
  } catch (const mgca::Error& error) {
    std::fprintf(stderr, "mgca %s: error: %s\n", name.c_str(), error.what());
    return mgca::cli::kExitError;
  } catch (const std::exception& error) {
    const int rank = mgca::util::process_rank();
    const std::string prefix = rank >= 0 ? "[rank " + std::to_string(rank) + "] " : "";
    std::fprintf(stderr, "%smgca %s: error: %s\n", prefix.c_str(), name.c_str(), error.what());
    return mgca::cli::kExitError;
  }
}
