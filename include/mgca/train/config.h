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
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mgca::train {

struct ModelConfig {
  std::string image_encoder = "vit_b16";  // vit_b16 | vit_tiny | resnet50 | resnet50_tiny
  std::string text_encoder = "bert";      // bert (Bio_ClinicalBERT shapes) | bert_tiny
  int64_t text_layers = 6;                // BERT layers built and run (MGCA: first 6 of 12)
  bool freeze_text_embeddings = false;    // ConVIRT: true
  int64_t freeze_text_layers = 0;         // first n BERT layers get no gradient (ConVIRT: 6)
  int64_t image_size = 224;               // crop size given to the image encoder
  int64_t resnet_input_size = 299;        // ResNet input resized to this (MGCA: 299); 0 = no resize
  int64_t embed_dim = 128;                // d of the global/local embeddings (ConVIRT: 512)
  int64_t head_hidden = 2048;             // hidden width of MGCA's heads / ConVIRT's image head
  int64_t text_head_hidden = 768;         // hidden width of ConVIRT's text head
  int64_t num_prototypes = 500;           // K of CPA
  std::string batchnorm = "sync";         // sync (SyncBatchNorm over the global batch) | per_rank
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
  std::string augment = "mgca";  // mgca | convirt | eval (centre crop, no randomness)
};

// Key names follow objectives::ObjectiveOptions (mgca/objectives/options.h).
struct ObjectivesConfig {
  std::string variant = "official";  // official | paper (docs/contract.md §2); sets the five booleans below
  double lambda_ita = 1.0;
  double lambda_cta = 1.0;
  double lambda_cpa = 1.0;
  double ita_temperature = 0.07;    // τ1
  double local_temperature = 0.1;   // τ2 (CTA)
  double proto_temperature = 0.2;   // τ3 (CPA)
  double sinkhorn_epsilon = 0.05;
  int64_t sinkhorn_iterations = 3;
  int64_t freeze_prototypes_epochs = 1;  // prototype gradient dropped during these first epochs
  double weight_quantile_low = 0.1;      // CTA word/patch weight clipping quantiles
  double weight_quantile_high = 0.9;
  // Set by `variant` unless given (official: true, paper: false).
  bool quirk_pad_words_in_softmax = true;           // docs/contract.md §2.2 (a)
  bool quirk_cls_attention_off_by_one = true;       // docs/contract.md §2.2 (b)
  bool quirk_vit_patch_output_unnormalized = true;  // docs/contract.md §2.2 (c)
  bool ita_sum_directions = true;                   // L_ITA = sum of both directions (paper: mean)
  bool cta_sum_parts = true;                        // L_CTA = L_word + L_patch (paper: mean)
  double convirt_lambda = 0.75;
  double convirt_temperature = 0.1;
  int64_t ita_tile = 8192;  // columns per tile of the memory-flat ITA/ConVIRT loss, used when N > ita_tile
};

struct OptimizerConfig {
  std::string name = "adamw";  // adamw (decoupled decay) | adam (L2 decay added to the gradient)
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
  std::string name = "cosine";   // cosine (linear warm-up, then cosine to min_lr) | constant
  int64_t epochs = 50;
  int64_t max_steps = 0;         // total optimizer steps; 0 = epochs × steps per epoch
  double warmup_fraction = 0.4;  // of the total steps, linear from min_lr to lr
  double min_lr = 1e-8;
  int64_t stop_after_steps = 0;  // end the run (with a checkpoint) after this step; 0 = run to the end
};

struct RuntimeConfig {
  std::string device = "auto";    // auto (GPU by local rank when present) | cpu | cuda
  std::string autocast = "auto";  // auto (bf16 on GPU, none on CPU) | bf16 (CPU and GPU) | none
  std::string dtype = "float32";  // float32 | float64 (numerical verification runs: slow, no autocast)
  int64_t threads = 0;            // intra-op threads per rank; 0 = cores on the host / ranks on the host
  bool deterministic = true;      // GPU: deterministic algorithms, cuDNN and cuBLAS workspace
  bool check_finite = true;       // stop with the step and loss part at a NaN/Inf loss
};

struct CommConfig {
  std::string backend = "auto";  // auto | mpi | nccl (comm::parse_backend; see mgca/comm/types.h)
  double timeout_s = 600.0;  // watchdog: a collective taking longer aborts the job
  double bucket_mb = 25.0;   // gradient all-reduce bucket size
  bool overlap = true;       // launch bucket all-reduces from backward hooks
  std::string grad_dtype = "native";  // native | bf16: what the gradient all-reduce sends (comm::parse_grad_dtype)
  bool validate = true;      // cross-rank shape/dtype check before each collective (~0.6 µs a call; GradSync's
                             // bucket all-reduces skip it, their layout is checked once)
};

struct CheckpointConfig {
  int64_t every_steps = 1000;  // 0 = only at the end and on preemption
  int64_t keep = 3;            // newest complete checkpoints kept
  std::string resume = "auto";  // auto (newest complete one, if any) | none | a checkpoint folder
  std::string dir;             // "" = <output_dir>/<name>/checkpoints
  bool async = true;           // write in a background thread (the step loop stalls for a host copy only)
};

struct LoggingConfig {
  int64_t every_steps = 1;             // metrics.jsonl line every n optimizer steps
  double progress_interval_s = 30.0;   // plain progress lines when stderr is not a terminal
};

struct Config {
  std::string name = "mgca";       // run name: outputs in <output_dir>/<name>/
  std::string method = "mgca";     // mgca | convirt
  int64_t seed = 42;
  std::string output_dir = "runs";

  ModelConfig model;
  TextConfig text;
  DataConfig data;
  ObjectivesConfig objectives;
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
  std::vector<std::string> choices;  // empty: any value of the type (range checks still apply)
  std::string doc;
};
std::vector<ConfigKey> config_keys();
// config_keys() as a Markdown table (docs/training.md holds a copy).
std::string config_keys_markdown();

// Parses a job (TOML text; `source` names it in errors), applies the
// overrides ("key=value", dotted keys) and resolves defaults that follow
// other keys (the quirks follow objectives.variant). Checks types and value
// ranges but touches no files. Throws mgca::Error.
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
