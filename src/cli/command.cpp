#include "command.h"

#include <CLI/CLI.hpp>
#include <mpi.h>

#include <cstdio>
#include <cstdlib>

#include "mgca/comm/runtime.h"
#include "mgca/comm/options.h"

namespace mgca::cli {

std::map<std::string, Command>& commands() {
  static std::map<std::string, Command> table;
  return table;
}

Registration::Registration(const std::string& name, const std::string& summary, CommandFunction run) {
  if (!commands().emplace(name, Command{summary, std::move(run)}).second) {
    std::fprintf(stderr, "mgca: subcommand '%s' registered twice\n", name.c_str());
    std::abort();
  }
}

int parse_arguments(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& help) {
    std::printf("%s", app.help().c_str());
    return kExitOk;
  } catch (const CLI::ParseError& error) {
    std::fprintf(stderr, "%s: %s\nrun '%s --help' for the options\n", app.get_name().c_str(),
                 error.what(), app.get_name().c_str());
    return kExitUsage;
  }
  return -1;
}

CLI::Validator positive_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        if (end == text.c_str() || *end != '\0' || !(value > 0)) return "must be a positive number, got " + text;
        return "";
      },
      "POSITIVE");
}

void abort_job(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  comm::finalize();
  std::exit(code);
}

void add_comm_timeout_option(CLI::App& app, double& seconds) {
  seconds = comm::CommOptions{}.timeout_seconds;
  app.add_option("--comm-timeout", seconds,
                 "seconds a collective may take before the watchdog ends the job, naming the ranks and the "
                 "collective that differ (mgca train: comm.timeout_s)")
      ->check(positive_number())
      ->capture_default_str();
}

}  // namespace mgca::cli
