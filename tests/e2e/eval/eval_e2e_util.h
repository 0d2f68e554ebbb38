// Helpers of the evaluation end-to-end tests.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "mgca/build_config.h"
#include "support/test_support.h"

namespace mgca::eval::e2e {

using test::quote;

// Runs `mgca ARGS` (or under mpirun with `ranks` > 1) and fails the test on a
// non-zero exit, printing the output.
inline std::string mgca(const std::string& args, int ranks = 1) {
  std::string command;
  if (ranks > 1) {
    command = std::string(MGCA_MPIEXEC) + " --allow-run-as-root --oversubscribe --bind-to none -np " +
              std::to_string(ranks) + " ";
  }
  command += quote(mgca::test::mgca_program()) + " " + args;
  const auto result = mgca::test::run_command(command);
  EXPECT_EQ(result.exit_code, 0) << command << "\n" << result.output;
  return result.output;
}

inline nlohmann::json read_json(const std::filesystem::path& path) {
  return nlohmann::json::parse(mgca::test::read_text_file(path));
}

// The values of results[] entries of one method and setting.
inline std::vector<double> values_of(const nlohmann::json& results, const std::string& method,
                                     const std::string& setting) {
  for (const auto& e : results["results"]) {
    if (e["method"] == method && e["setting"] == setting) return e["values"].get<std::vector<double>>();
  }
  ADD_FAILURE() << "no result for method '" << method << "', setting '" << setting << "'";
  return {};
}

inline double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

}  // namespace mgca::eval::e2e
