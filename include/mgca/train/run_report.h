// `mgca report RUN`: one self-contained HTML file about a training run, the
// file a user attaches to a ticket. It holds, as inline SVG (no script, no
// external file; it opens offline): the loss parts, in-batch retrieval
// accuracy, gradient norm, learning rate, throughput, the time split of a
// step, per-rank step/data/communication times (min..max band, median,
// slowest rank) when the run logged them, and memory; then the checkpoints
// and the resolved config. Every text from the run (name, keys, config) is
// escaped.
//
// Reads only: RUN/metrics.jsonl, RUN/config.toml and the checkpoint folder
// (checkpoint.dir of that config, or RUN/checkpoints). Local to the calling
// process (no collectives); no torch.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace mgca::train {

// metrics.jsonl read back: one row per logged step, ascending.
struct RunMetrics {
  std::vector<double> steps;
  // Keys with a number in some row (other than "step"), in order of first appearance.
  std::vector<std::string> keys;
  // key → one value per step: NaN where the row lacks the key or holds
  // null (a NaN the trainer logged) or a non-number.
  std::map<std::string, std::vector<double>> values;
  // Lines that were skipped and why (a last line cut short by a crash),
  // steps logged more than once (a resume from an earlier checkpoint: the
  // later line wins, as its run wrote the final weights).
  std::vector<std::string> notes;

  bool has(const std::string& key) const { return values.count(key) != 0; }
  // The values of `key`, all NaN when absent.
  std::vector<double> column(const std::string& key) const;
};

// Errors (mgca::Error) name the file: missing, unreadable, or no line with
// a step (an empty file).
RunMetrics read_run_metrics(const std::filesystem::path& file);

struct CheckpointSummary {
  std::string name;  // folder name: step-00000050, or step-00000050.tmp (a write that was cut short)
  int64_t step = -1;
  bool cut_short = false;  // a step-N.tmp folder: its write was interrupted or is under way
  bool complete = false;   // holds DONE
  uint64_t bytes = 0;     // all files in the folder
  std::string time;       // UTC time of DONE (else of the folder), "2026-12-06 07:45:22"
  int64_t parameters = -1;  // model.safetensors: elements of all tensors; -1 when unreadable
  int ranks = 0;            // rank-*.state files (the world size that wrote it)
};

// Every step-N folder under `dir` (complete or not), by step; an empty
// list when `dir` does not exist.
std::vector<CheckpointSummary> summarize_checkpoints(const std::filesystem::path& dir);

struct RunSummary {
  std::filesystem::path run_dir;
  std::string name;         // the config's name, else the folder's name
  std::string config_toml;  // RUN/config.toml as written ("" when absent)
  std::string method;       // from the config ("" when it could not be parsed)
  std::filesystem::path checkpoint_dir;
  std::string started;      // UTC time config.toml was written (the run's last start)
  std::string last_logged;  // UTC time metrics.jsonl was last written
  std::vector<std::string> notes;  // about the folder (config unreadable, checkpoint dir missing)
  RunMetrics metrics;
  std::vector<CheckpointSummary> checkpoints;
};

// Errors name the folder (missing, not a folder) or metrics.jsonl (see above).
RunSummary read_run_summary(const std::filesystem::path& run_dir);

// The HTML page; `generated` is printed as the report's date.
std::string render_run_report(const RunSummary& run, const std::string& generated);

// Reads `run_dir`, writes the page atomically to `out` (default
// RUN/report.html) and returns the path written.
std::filesystem::path write_run_report(const std::filesystem::path& run_dir, const std::filesystem::path& out = {});

}  // namespace mgca::train
