// Evaluation results: every figure with its seeds, written as JSON with the
// command line, and printed as a table shaped like the MGCA/ConVIRT papers'
// tables (rows: methods/checkpoints, random init included; columns:
// dataset × setting, e.g. label fraction; cells: mean ± std over seeds).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mgca::eval {

struct ResultEntry {
  std::string method;   // table row: "random init (vit_tiny)", a checkpoint path, ...
  std::string dataset;  // column group
  std::string setting;  // column within the group: "1%", "R@5", ...
  std::string metric;   // "AUROC", "ACC", "R@5", ...: values are fractions in [0, 1]
  // One per seed (or a single value). A negative value means the protocol had nothing to score
  // (MGCA's mAP of -1: no test image with both a target and a detection); it stays in `values` as
  // the reference code reports it, and the mean and std count it as 0, the worst score (averaging
  // -1 would rank a detector that finds nothing below one that scores 0).
  std::vector<double> values;
  std::vector<uint64_t> seeds;  // same length as values when seeded
  nlohmann::json details = nlohmann::json::object();  // per-label AUROC, chance, sizes, ...
};

class Results {
 public:
  // `kind`: "probe", "retrieval", "zeroshot", ... (recorded in the JSON).
  explicit Results(std::string kind);

  void add(ResultEntry entry);
  const std::vector<ResultEntry>& entries() const { return entries_; }
  // Free-form facts for the JSON (encoder paths, hashes, options, chance, ...).
  nlohmann::json& info() { return info_; }

  // The table: one row per method (first-seen order), one column per
  // (dataset, setting) (first-seen order); cells "87.61 ± 0.32" in percent
  // (two decimals; "± std" only with ≥ 2 values), "—" where missing; "†"
  // marks a cell with a seed that had nothing to score. A footnote names the
  // metric of each dataset, the number of seeds and what "†" means.
  std::string table(const std::string& title) const;

  // {"kind", "command", "argv", "version", "created_utc", "info",
  //  "results": [{method, dataset, setting, metric, values, seeds, mean,
  //  std, unscored (values with nothing to score), details}]}
  nlohmann::json to_json(const std::vector<std::string>& argv) const;
  // Atomic write (temporary file, rename); error names the path.
  void write_json(const std::filesystem::path& path, const std::vector<std::string>& argv) const;

 private:
  std::string kind_;
  std::vector<ResultEntry> entries_;
  nlohmann::json info_ = nlohmann::json::object();
};

// The command line as one shell-quoted string.
std::string join_command_line(const std::vector<std::string>& argv);

}  // namespace mgca::eval
