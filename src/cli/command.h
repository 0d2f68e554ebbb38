// Subcommands of the `mgca` program. Each cmd_*.cpp registers one:
//
//   static const mgca::cli::Registration reg{"info", "print what a checkpoint holds", run_info};
//
// The function receives the arguments after the subcommand name (argv[0] is
// "mgca <name>") and returns the process exit code.
#pragma once

#include <fmt/format.h>

#include <functional>
#include <map>
#include <string>

namespace mgca::cli {

using CommandFunction = std::function<int(int argc, char** argv)>;

struct Command {
  std::string summary;
  CommandFunction run;
};

// Name → command, sorted by name.
std::map<std::string, Command>& commands();

struct Registration {
  Registration(const std::string& name, const std::string& summary, CommandFunction run);
};

// Exit codes shared by every subcommand (documented in the README).
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;       // a run-time error (bad input file, failed rank)
inline constexpr int kExitUsage = 2;       // bad command line or job file
inline constexpr int kExitPreempted = 75;  // checkpointed after SIGUSR1/SIGTERM: requeue me (EX_TEMPFAIL)

}  // namespace mgca::cli

namespace CLI {
class App;
class Validator;
}

namespace mgca::cli {

// Parses the subcommand's arguments with CLI11. Returns -1 when the command
// should go on, otherwise the exit code to return at once (0 after --help,
// kExitUsage after an unknown flag or a bad value, with a message on stderr).
int parse_arguments(CLI::App& app, int argc, char** argv);

// A CLI11 check for counts and sizes: "must be a positive number, got 0"
// (CLI::PositiveNumber prints its internal range, 0 to 1.8e308).
CLI::Validator positive_number();

// Ends the whole job after a failure on this rank alone (call after
// comm::init): the other ranks may be waiting in a collective, so under
// several ranks the job is aborted at once (the watchdog would, later);
// alone, MPI is finalized and the process exits with `code`.
[[noreturn]] void abort_job(int code);

// --comm-timeout SECONDS for the programs without a job file (prep, eval):
// the collective watchdog's limit, `comm.timeout_s` of `mgca train`, with
// the same default. `seconds` is set to the default first.
void add_comm_timeout_option(CLI::App& app, double& seconds);

}  // namespace mgca::cli

