// The training configuration: every knob of a run in one struct (no torch).
//
// A job file is TOML with the tables below; every key is optional and takes
// the default shown here (the MGCA paper setting) when absent. Reading is
// strict: an unknown key or table is an error that names the valid keys of
// that table, a value of the wrong type names the key, the expected and the
// found type, and a bad value (out of range, not one of the choices) names
// the key and what is allowed. `--set key=value` overrides use dotted keys
// ("optimizer.lr=1e-4") and go through the same checks.
//
// Relative paths in a job file are taken relative to the working directory
// of `mgca train`, not to the job file.
//
// Under MPI, rank 0 reads and validates the job, resolves it and broadcasts
// the result (Boost.Serialization) with load_config_collective(), so every
// rank trains with the identical resolved Config. The complete key list with
// defaults and meanings is config_keys() (docs/training.md is checked against it).
//
// Each table is a typed options struct of the module that acts on it
// (model::ModelOptions, comm::CommSettings, data::DataOptions, ...), holding
// its defaults and binding its keys to fields with their ranges in one
// visit_*_options function beside it. Settings with a fixed set of values
// are enums of that module, each with one name table (util/option_types.h)
// that the parser, to_toml, the key table and the error messages read: past
// parse_config nothing compares a setting's name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "mgca/comm/options.h"
#include "mgca/data/options.h"
#include "mgca/model/options.h"
#include "mgca/objectives/options.h"
#include "mgca/text/options.h"
#include "mgca/train/checkpoint_options.h"
#include "mgca/train/optimizer_options.h"
#include "mgca/train/runtime_options.h"
#include "mgca/train/schedule.h"
#include "mgca/util/option_types.h"

namespace mgca::train {

// What is trained.
enum class Method { Mgca, Convirt };
inline constexpr util::NamedValue<Method> kMethodNames[] = {{Method::Mgca, "mgca"}, {Method::Convirt, "convirt"}};
constexpr const auto& enum_names(Method) { return kMethodNames; }

struct LoggingConfig {
  int64_t every_steps = 1;             // metrics.jsonl line every n optimizer steps
  double progress_interval_s = 30.0;   // plain progress lines when stderr is not a terminal
  bool tensorboard = true;             // TensorBoard event files in <run>/tb/
  double straggler_factor = 1.5;       // warn when a rank is this much slower than the median; 0 = off
  int64_t straggler_intervals = 3;     // ... for this many logged intervals in a row
};

struct Config {
  std::string name = "mgca";       // run name: outputs in <output_dir>/<name>/
  Method method = Method::Mgca;
  int64_t seed = 42;
  std::string output_dir = "runs";

  // Each table is its owning module's options struct, which binds its keys
  // (visit_*_options beside the struct).
  model::ModelOptions model;
  text::TextOptions text;
  data::DataOptions data;
  // Its num_prototypes and patches_from_vit are no keys: the task sets them
  // from model.num_prototypes and model.image_encoder.
  objectives::ObjectiveOptions objectives;
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  RuntimeOptions runtime;
  comm::CommSettings comm;
  CheckpointOptions checkpoint;
  LoggingConfig logging;

  std::filesystem::path run_dir() const;         // output_dir/name
  std::filesystem::path checkpoint_dir() const;  // checkpoint.dir or run_dir()/checkpoints
};

// One knob: dotted key, TOML type, default (as TOML text), allowed values, meaning.
struct ConfigKey {
  std::string key;
  std::string type;  // "string", "integer", "float", "boolean", "array of floats", "array of strings"
  std::string default_value;
  std::vector<std::string> choices;  // an enum's names; empty: any value of the type
  util::Range range;                 // numbers (each element of an array): the allowed values
  std::string doc;
};
std::vector<ConfigKey> config_keys();
// config_keys() as a Markdown table (docs/training.md holds a copy).
std::string config_keys_markdown();

// Parses a job (TOML text; `source` names it in errors), applies the
// overrides ("key=value", dotted keys) and resolves defaults that follow
// other keys (the quirks follow objectives.variant, as ObjectiveOptions::set_variant
// sets them). Checks types and value ranges but touches no files. Throws mgca::Error.
Config parse_config(const std::string& toml_text, const std::string& source,
                    const std::vector<std::string>& overrides = {});

// parse_config() of a file, then check_paths(). Throws mgca::Error.
Config load_config(const std::filesystem::path& job_file,
                   const std::vector<std::string>& overrides = {}, int world_size = 1);

// Files the run needs: the dataset (a dataset folder whose samples carry
// reports, at least one micro-batch of world_size x data.batch_size samples,
// images no smaller than the model.image_size crops), a usable vocabulary,
// weight files, and an explicit resume checkpoint.
void check_paths(const Config& config, int world_size = 1);

// The resolved config as TOML (every key, in config_keys() order); parsing
// it gives back an identical Config.
std::string to_toml(const Config& config);

// A run resumed as `after` on `world_after` ranks from a checkpoint written
// by `before` on `world_before` ranks: what makes it differ from the
// uninterrupted run, one phrase per change naming the keys. Empty when the
// global batch (W × data.batch_size, and × optimizer.accumulate per step)
// is the same and nothing that is per rank (objectives.negatives or
// objectives.sinkhorn "local", model.batchnorm "per_rank") sees another b:
// then the run continues the same trajectory on any W (docs/contract.md §2.6).
std::vector<std::string> resume_changes(const Config& before, int world_before, const Config& after,
                                        int world_after);

// Boost.Serialization (text archive) of every field, and back.
std::string serialize(const Config& config);
Config deserialize(const std::string& archive);

bool operator==(const Config& a, const Config& b);
inline bool operator!=(const Config& a, const Config& b) { return !(a == b); }

}  // namespace mgca::train
