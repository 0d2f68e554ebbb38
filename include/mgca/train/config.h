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
// Settings with a fixed set of values are enums of the module that acts on
// them (model::ImageEncoderKind, comm::Backend, data::Pipeline, ...), each
// with one name table (util/option_types.h) that the parser, to_toml, the key
// table and the error messages read: past parse_config nothing compares a
// setting's name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "mgca/comm/types.h"
#include "mgca/data/augment.h"
#include "mgca/model/config.h"
#include "mgca/objectives/options.h"
#include "mgca/util/device_choice.h"
#include "mgca/util/option_types.h"

namespace mgca::train {

// What is trained.
enum class Method { Mgca, Convirt };
inline constexpr util::NamedValue<Method> kMethodNames[] = {{Method::Mgca, "mgca"}, {Method::Convirt, "convirt"}};
constexpr const auto& enum_names(Method) { return kMethodNames; }

// AdamW: decoupled weight decay; Adam: L2 decay added to the gradient.
enum class OptimizerKind { AdamW, Adam };
inline constexpr util::NamedValue<OptimizerKind> kOptimizerKindNames[] = {{OptimizerKind::AdamW, "adamw"},
                                                                           {OptimizerKind::Adam, "adam"}};
constexpr const auto& enum_names(OptimizerKind) { return kOptimizerKindNames; }

// Cosine: linear warm-up from min_lr, then cosine to min_lr. Constant: lr throughout.
enum class ScheduleKind { Cosine, Constant };
inline constexpr util::NamedValue<ScheduleKind> kScheduleKindNames[] = {{ScheduleKind::Cosine, "cosine"},
                                                                         {ScheduleKind::Constant, "constant"}};
constexpr const auto& enum_names(ScheduleKind) { return kScheduleKindNames; }

// Mixed precision of the forward. Auto: bf16 on a GPU, none on the CPU.
enum class Autocast { Auto, BFloat16, None };
inline constexpr util::NamedValue<Autocast> kAutocastNames[] = {
    {Autocast::Auto, "auto"}, {Autocast::BFloat16, "bf16"}, {Autocast::None, "none"}};
constexpr const auto& enum_names(Autocast) { return kAutocastNames; }

// Weights and activations (float64: numerical verification runs).
enum class ComputeDtype { Float32, Float64 };
inline constexpr util::NamedValue<ComputeDtype> kComputeDtypeNames[] = {{ComputeDtype::Float32, "float32"},
                                                                         {ComputeDtype::Float64, "float64"}};
constexpr const auto& enum_names(ComputeDtype) { return kComputeDtypeNames; }

// checkpoint.resume: "auto" (the newest complete checkpoint, if any),
// "none" (start fresh) or a checkpoint folder.
enum class ResumeMode { Auto, None, Folder };
struct ResumeSetting {
  ResumeMode mode = ResumeMode::Auto;
  std::string folder;  // mode == Folder

  static ResumeSetting from_folder(std::string folder) { return {ResumeMode::Folder, std::move(folder)}; }
  // "auto", "none" or the folder; from_text is an error for "".
  std::string text() const;
  static ResumeSetting from_text(const std::string& text);
  bool operator==(const ResumeSetting& other) const { return mode == other.mode && folder == other.folder; }
};

struct ModelConfig {
  model::ImageEncoderKind image_encoder = model::ImageEncoderKind::VitB16;
  model::TextEncoderKind text_encoder = model::TextEncoderKind::Bert;
  int64_t text_layers = 6;                // BERT layers built and run (MGCA: first 6 of 12)
  bool freeze_text_embeddings = false;    // ConVIRT: true
  int64_t freeze_text_layers = 0;         // first n BERT layers get no gradient (ConVIRT: 6)
  int64_t image_size = 224;               // crop size given to the image encoder
  int64_t resnet_input_size = 299;        // ResNet input resized to this (MGCA: 299); 0 = no resize
  int64_t embed_dim = 128;                // d of the global/local embeddings (ConVIRT: 512)
  int64_t head_hidden = 2048;             // hidden width of MGCA's heads / ConVIRT's image head
  int64_t text_head_hidden = 768;         // hidden width of ConVIRT's text head
  int64_t num_prototypes = 500;           // K of CPA
  model::BatchNormMode batchnorm = model::BatchNormMode::Sync;
  double dropout = 0.1;                   // BERT hidden and attention dropout
  std::string image_weights;              // safetensors with timm/torchvision names; "" = random init
  std::string text_weights;               // safetensors with Hugging Face BERT names; "" = random init
  bool partial_load = false;              // allow missing/unexpected tensors in the weight files
};

struct TextConfig {
  std::string vocab = "../shared/data/vocab/bert-base-cased-vocab.txt";  // WordPiece vocab.txt
  bool lower_case = false;  // Bio_ClinicalBERT is cased
  int64_t max_length = 112;  // tokens per report, [CLS] and [SEP] included
};

struct DataConfig {
  std::string train;           // dataset folder (dataset.json + shards); required
  int64_t batch_size = 72;     // samples per rank per micro-step (global batch = W × this × accumulate)
  int64_t workers = 2;         // loader threads per rank
  int64_t prefetch = 4;        // batches decoded ahead of the step
  data::Pipeline augment = data::Pipeline::Mgca;  // eval: centre crop, no randomness
};

struct OptimizerConfig {
  OptimizerKind name = OptimizerKind::AdamW;
  double lr = 2e-5;            // peak learning rate
  double weight_decay = 0.05;
  std::vector<double> betas = {0.9, 0.999};
  double eps = 1e-8;
  // Parameters whose name contains one of these strings get no weight decay.
  // Empty by default: the official MGCA code decays every parameter.
  std::vector<std::string> no_decay;
  double grad_clip_norm = 0.0;  // clip the global gradient L2 norm to this; 0 = off
  int64_t accumulate = 1;       // micro-steps per optimizer step
  // Loss spikes (llm.c's outlier detector): skip the update of a step whose
  // loss lies more than spike_zscore standard deviations above the mean of
  // the last spike_window losses; 0 = off.
  double spike_zscore = 0.0;
  int64_t spike_window = 128;
};

struct ScheduleConfig {
  ScheduleKind name = ScheduleKind::Cosine;
  int64_t epochs = 50;
  int64_t max_steps = 0;         // total optimizer steps; 0 = epochs × steps per epoch
  double warmup_fraction = 0.4;  // of the total steps, linear from min_lr to lr
  double min_lr = 1e-8;
  int64_t stop_after_steps = 0;  // end the run (with a checkpoint) after this step; 0 = run to the end
};

struct RuntimeConfig {
  util::DeviceChoice device = util::DeviceChoice::Auto;  // auto: GPU by local rank when present
  Autocast autocast = Autocast::Auto;
  ComputeDtype dtype = ComputeDtype::Float32;  // float64: slow, no autocast
  int64_t threads = 0;            // intra-op threads per rank; 0 = cores on the host / ranks on the host
  bool deterministic = true;      // GPU: deterministic algorithms, cuDNN and cuBLAS workspace
  bool check_finite = true;       // stop with the step and loss part at a NaN/Inf loss
};

struct CommConfig {
  comm::Backend backend = comm::Backend::Auto;
  double timeout_s = 600.0;  // watchdog: a collective taking longer aborts the job
  double bucket_mb = 25.0;   // gradient all-reduce bucket size
  bool overlap = true;       // launch bucket all-reduces from backward hooks
  comm::GradDtype grad_dtype = comm::GradDtype::Native;  // what the gradient all-reduce sends
  bool validate = true;      // cross-rank shape/dtype check before each collective (~0.6 µs a call; GradSync's
                             // bucket all-reduces skip it, their layout is checked once)
};

struct CheckpointConfig {
  int64_t every_steps = 1000;  // 0 = only at the end and on preemption
  int64_t keep = 3;            // newest complete checkpoints kept
  ResumeSetting resume;         // auto (newest complete one, if any) | none | a checkpoint folder
  std::string dir;             // "" = <output_dir>/<name>/checkpoints
  bool async = true;           // write in a background thread (the step loop stalls for a host copy only)
};

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

  ModelConfig model;
  TextConfig text;
  DataConfig data;
  // The [objectives] table. Its num_prototypes and patches_from_vit are no
  // keys: the task sets them from model.num_prototypes and model.image_encoder.
  objectives::ObjectiveOptions objectives;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  RuntimeConfig runtime;
  CommConfig comm;
  CheckpointConfig checkpoint;
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

// Boost.Serialization (text archive) of every field, and back.
std::string serialize(const Config& config);
Config deserialize(const std::string& archive);

bool operator==(const Config& a, const Config& b);
inline bool operator!=(const Config& a, const Config& b) { return !(a == b); }

}  // namespace mgca::train
