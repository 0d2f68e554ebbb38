#include "command.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>

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

}  // namespace mgca::cli
