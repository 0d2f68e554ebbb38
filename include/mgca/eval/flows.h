// The evaluation flows of `mgca eval` (docs/evaluation.md) as functions: each
// takes typed options, loads the models and splits, runs its protocol and, on
// rank 0, prints the table and writes the results JSON. The program only
// parses the command line into these options (src/cli/cmd_eval.cpp).
//
// Across ranks: collective over `comm`. Every rank passes the same options;
// each rank sets its CPU threads (util::choose_thread_count) and picks its
// device (util::choose_device). A request that cannot run (no model, the
// probe's or the test split missing, encoders where text is needed) raises
// UsageError on every rank alike; segmentation and detection without their
// three splits raise Error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/eval/detect_protocol.h"
#include "mgca/eval/encoder.h"
#include "mgca/eval/labels.h"
#include "mgca/eval/pipeline.h"
#include "mgca/eval/protocol.h"
#include "mgca/eval/segment_protocol.h"
#include "mgca/util/device.h"

namespace mgca::eval {

// The models to evaluate.
struct ModelSources {
  std::vector<std::filesystem::path> checkpoints;  // whole models (EvalModel::from_checkpoint)
  std::vector<std::filesystem::path> encoders;     // exported image encoders
  std::filesystem::path vocab;                     // ModelLoadOptions::vocab
  uint64_t random_seed = 0;                        // of the random initialisation beside each architecture
};

// The splits to evaluate on: explicit folders win over `data`'s train/, val/
// (or valid/, …), test/ (resolve_splits).
struct SplitSources {
  std::filesystem::path data, train, val, test;
  std::optional<LabelPolicy> labels;  // probe, zero-shot; empty: default_label_policy of the reference split
  std::string dataset_name;           // the table's column; empty: derived from the data (each flow says how)
};

// Where a rank computes.
struct ComputeOptions {
  int threads = 0;  // 0: util::choose_thread_count's rule
  util::DeviceChoice device = util::DeviceChoice::Auto;
};

// What every table-producing flow shares.
struct EvaluationOutput {
  ExtractionOptions extraction;        // batch size per rank, feature cache folder (empty: none)
  std::filesystem::path results_file;  // the results JSON (Results::write_json)
  std::vector<std::string> command;    // the command line recorded in it
};

// The trained models in the order given (checkpoints, then encoders), each
// architecture's random initialisation beside them (one per distinct
// architecture, seed `sources.random_seed`; two random rows of one image
// architecture get distinct names), random rows first as the papers list
// them; all on `device`. `need_text`: whole models (retrieval, zero-shot);
// otherwise the random rows are image encoders alone, the same whatever the
// trained model came from. UsageError without a model, or with encoders when
// text is needed. Local (every rank loads the same models).
std::vector<EvalModel> load_evaluation_models(const ModelSources& sources, torch::Device device, bool need_text);

// The prompts that stand for each class in zero-shot: from `prompts_file`
// (JSON {"class": ["prompt", ...]}, an error naming the file and the class
// when one is missing) or, when it is empty, default_prompt_templates() on
// the lower-cased class name.
std::vector<std::vector<std::string>> class_prompts(const std::filesystem::path& prompts_file,
                                                    const std::vector<std::string>& classes);
// "{}", "there is {}", "evidence of {}", "findings consistent with {}".
const std::vector<std::string>& default_prompt_templates();

struct ProbeEvaluation {
  ModelSources models;
  SplitSources splits;  // train and test required; no val: a hold-out of train
  ComputeOptions compute;
  EvaluationOutput output;
  ProbeGridOptions grid;
  double val_fraction = 0.1;  // the stratified hold-out of train when there is no val split
};
// Linear probe on frozen image features: label fractions × seeds per model.
void run_probe_evaluation(comm::Communicator& comm, const ProbeEvaluation& options);

struct RetrievalEvaluation {
  ModelSources models;
  SplitSources splits;  // test required
  ComputeOptions compute;
  EvaluationOutput output;
  std::vector<int64_t> ks = {1, 5, 10};
  bool exact_pairs = false;  // only the pair itself matches (default: identical reports match too)
};
// Image→report and report→image recall@K on held-out pairs per model.
void run_retrieval_evaluation(comm::Communicator& comm, const RetrievalEvaluation& options);

struct ZeroShotEvaluation {
  ModelSources models;
  SplitSources splits;  // test required
  ComputeOptions compute;
  EvaluationOutput output;
  std::filesystem::path prompts_file;  // class_prompts
};
// Zero-shot classification from per-class prompts per model.
void run_zero_shot_evaluation(comm::Communicator& comm, const ZeroShotEvaluation& options);

struct SegmentEvaluation {
  ModelSources models;
  SplitSources splits;  // train, val and test with masks required
  ComputeOptions compute;
  EvaluationOutput output;
  SegmentGridOptions grid;
};
// Segmentation decoder on each frozen image encoder, label fractions × seeds.
void run_segment_evaluation(comm::Communicator& comm, const SegmentEvaluation& options);

struct DetectEvaluation {
  ModelSources models;
  SplitSources splits;  // train, val and test with boxes required
  ComputeOptions compute;
  EvaluationOutput output;
  DetectGridOptions grid;
};
// YOLOv3 head on each frozen image encoder, label fractions × seeds.
void run_detect_evaluation(comm::Communicator& comm, const DetectEvaluation& options);

enum class ExtractedKind { ImageFeatures, Embeddings };

struct FeatureExtraction {
  ModelSources model;  // exactly one checkpoint or encoder
  std::filesystem::path split;
  ExtractedKind what = ExtractedKind::ImageFeatures;
  std::filesystem::path out;  // the safetensors written; it is the cache, reused when its key matches
  int64_t batch_size = ExtractionOptions{}.batch_size;
  ComputeOptions compute;
};
// Extracts (or reuses) the image features or both embeddings of one split and
// leaves them in `out` (pipeline.h's cache file format).
void run_feature_extraction(comm::Communicator& comm, const FeatureExtraction& options);

}  // namespace mgca::eval
