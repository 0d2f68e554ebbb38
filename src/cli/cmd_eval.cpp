// mgca eval: judge pretrained encoders as the MGCA/ConVIRT papers do
// (docs/evaluation.md). This file parses the command line into eval's
// options (mgca/eval/flows.h) and calls the flow.
//
//   mgca eval probe --checkpoint runs/x/checkpoints/step-00001000 --data data/synth
//   mgca eval probe --encoder encoder.safetensors --train D1 --val D2 --test D3 --fractions 0.01,0.1,1 --seeds 3
//   mgca eval retrieval --checkpoint CKPT --test data/synth/test
//   mgca eval zeroshot --checkpoint CKPT --test data/synth/test [--prompts prompts.json]
//   mgca eval extract --checkpoint CKPT --split data/synth/test --out features.safetensors
//   mgca eval segment --encoder encoder.safetensors --data data/synth --fractions 0.1
//   mgca eval detect --encoder encoder.safetensors --data data/synth --fractions 0.01,0.1,1
//   mpirun -np 4 --bind-to none mgca eval probe ...   (feature extraction on 4 ranks)
//
// Every run reports a random initialisation of each architecture beside
// the trained models, prints a table on rank 0 and writes a JSON with every
// figure and the command line.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <sstream>
#include <type_traits>

#include "command.h"
#include "mgca/comm/communicator.h"
#include "mgca/comm/runtime.h"
#include "mgca/eval/flows.h"
#include "mgca/util/device.h"
#include "mgca/util/error.h"

namespace mgca::cli {
namespace {

// The options the subcommands share, as given on the command line.
struct CommonArgs {
  std::vector<std::string> checkpoints, encoders;
  std::string vocab;
  uint64_t random_seed = 0;
  std::string data, train, val, test;
  std::string labels = "auto";
  std::string dataset_name;
  int64_t batch_size = eval::ExtractionOptions{}.batch_size;
  std::string cache_dir = "eval-cache";
  bool no_cache = false;
  std::string out;
  int threads = 0;
  std::string device = util::enum_name(util::DeviceChoice::Auto);
  double comm_timeout = 0;  // set by add_comm_timeout_option
};

// --device: the names of util::DeviceChoice, whose table is the one list of them.
void add_device_option(CLI::App& app, std::string& device) {
  app.add_option("--device", device,
                 fmt::format("{} (auto: GPU by local rank when present)", util::enum_choices<util::DeviceChoice>()))
      ->check(CLI::IsMember(util::enum_name_list<util::DeviceChoice>()))
      ->capture_default_str();
}

void add_model_options(CLI::App& app, CommonArgs& c) {
  app.add_option("--checkpoint", c.checkpoints,
                 "checkpoint folder or its model.safetensors (repeatable)");
  app.add_option("--encoder", c.encoders,
                 "exported image encoder (safetensors, docs/evaluation.md) (repeatable)");
  app.add_option("--vocab", c.vocab, "WordPiece vocabulary (default: the run config's text.vocab)");
  app.add_option("--random-seed", c.random_seed,
                 "seed of the random initialisation reported beside each architecture")
      ->capture_default_str();
}

void add_data_options(CLI::App& app, CommonArgs& c, bool splits) {
  if (splits) {
    app.add_option("--data", c.data, "folder with train/, val/ (or valid/, validation/, validate/), test/ dataset folders");
    app.add_option("--train", c.train, "training split dataset folder");
    app.add_option("--val", c.val, "validation split dataset folder");
  }
  app.add_option("--test", c.test, "test split dataset folder");
  app.add_option("--labels", c.labels, "label policy: auto, chexpert-mgca, ignore, multiclass")
      ->capture_default_str();
  app.add_option("--dataset-name", c.dataset_name,
                 "column name in the table (default: the --data folder's name or the dataset source)");
}

void add_run_options(CLI::App& app, CommonArgs& c, const std::string& kind) {
  app.add_option("--batch-size", c.batch_size, "images per rank per extraction batch")
      ->check(positive_number())
      ->capture_default_str();
  app.add_option("--cache-dir", c.cache_dir, "feature cache folder")->capture_default_str();
  app.add_flag("--no-cache", c.no_cache, "extract again and write no cache");
  c.out = "eval-" + kind + ".json";
  app.add_option("--out", c.out, "results JSON")->capture_default_str();
  app.add_option("--threads", c.threads, "intra-op threads per rank (0: cores / ranks on the host)");
  add_comm_timeout_option(app, c.comm_timeout);
  add_device_option(app, c.device);
}

// The help texts that differ between segmentation and detection.
struct HeadOptionHelp {
  const char* fractions;
  const char* patience;
  const char* input_size;
};

// The options of a head fine-tuned on a frozen encoder (segment, detect).
template <typename Grid>
void add_head_options(CLI::App& app, std::string& fractions, Grid& grid, const HeadOptionHelp& help) {
  auto& train = grid.train;
  app.add_option("--fractions", fractions, help.fractions)->capture_default_str();
  app.add_option("--seeds", grid.seeds, "seeds per fraction")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", grid.base_seed, "first seed")->capture_default_str();
  app.add_option("--lr", train.learning_rate, "AdamW learning rate")->capture_default_str();
  app.add_option("--weight-decay", train.weight_decay, "AdamW weight decay")->capture_default_str();
  app.add_option("--train-batch-size", train.batch_size, "global training batch")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--epochs", train.max_epochs, "maximum epochs")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--patience", train.patience, help.patience)->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--input-size", train.input_size, help.input_size)->capture_default_str();
}

// What a table-producing subcommand takes besides its own options: the
// models, the splits (`splits`: train/val/test, else a test split alone),
// and how it runs.
void add_table_options(CLI::App& app, CommonArgs& c, const std::string& kind, bool splits) {
  add_model_options(app, c);
  add_data_options(app, c, splits);
  if (!splits) app.add_option("--data", c.data, "folder with a test/ dataset folder");
  add_run_options(app, c, kind);
}

std::vector<double> parse_list(const std::string& text, const char* what) {
  std::vector<double> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stod(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      MGCA_USAGE_CHECK(false, "{}: '{}' is not a number (expected a comma-separated list, e.g. 0.01,0.1,1)", what,
                       item);
    }
  }
  MGCA_USAGE_CHECK(!out.empty(), "{}: empty list", what);
  return out;
}

// A list option's default as it is typed: "0.01,0.1,1".
template <typename T>
std::string list_text(const std::vector<T>& values) {
  return fmt::format("{}", fmt::join(values, ","));
}

eval::ComputeOptions compute_options(const CommonArgs& c) {
  return {c.threads, util::parse_device_choice(c.device, "--device")};
}

eval::ModelSources model_sources(const CommonArgs& c) {
  eval::ModelSources m;
  m.checkpoints.assign(c.checkpoints.begin(), c.checkpoints.end());
  m.encoders.assign(c.encoders.begin(), c.encoders.end());
  m.vocab = c.vocab;
  m.random_seed = c.random_seed;
  return m;
}

// Only the probe and zero-shot read labels; the other subcommands accept
// --labels and ignore it.
template <typename Evaluation>
constexpr bool kReadsLabels =
    std::is_same_v<Evaluation, eval::ProbeEvaluation> || std::is_same_v<Evaluation, eval::ZeroShotEvaluation>;

// Fills what every table-producing evaluation shares.
template <typename Evaluation>
void set_common_options(const CommonArgs& c, const std::vector<std::string>& command, Evaluation& e) {
  e.models = model_sources(c);
  e.splits.data = c.data;
  e.splits.train = c.train;
  e.splits.val = c.val;
  e.splits.test = c.test;
  if (kReadsLabels<Evaluation> && c.labels != "auto") e.splits.labels = eval::parse_label_policy(c.labels);
  e.splits.dataset_name = c.dataset_name;
  e.compute = compute_options(c);
  e.output.extraction.batch_size = c.batch_size;
  if (!c.no_cache) e.output.extraction.cache_dir = c.cache_dir;
  e.output.results_file = c.out;
  e.output.command = command;
}

// MPI and the world communicator with --comm-timeout; the options are
// converted after this, so errors in them carry the rank.
std::shared_ptr<comm::Communicator> start_world(int* argc, char*** argv, const CommonArgs& c) {
  comm::init(argc, argv);
  comm::CommOptions options;
  options.timeout_seconds = c.comm_timeout;
  return comm::Communicator::world(options);
}

std::vector<std::string> arguments(int argc, char** argv) {
  std::vector<std::string> out = {"mgca", "eval"};
  for (int i = 1; i < argc; ++i) out.push_back(argv[i]);
  return out;
}

// Each subcommand's arguments: the common ones, its evaluation's options
// (bound to the command line where they are plain values) and the lists it
// parses itself (finish_options, after comm::init so errors carry the rank).
template <typename Evaluation>
struct FractionGridArgs {  // probe, segment, detect: the list is --fractions
  CommonArgs c;
  Evaluation options;
  std::string fractions = list_text(options.grid.fractions);
  void finish_options() { options.grid.fractions = parse_list(fractions, "--fractions"); }
};
using ProbeArgs = FractionGridArgs<eval::ProbeEvaluation>;
using SegmentArgs = FractionGridArgs<eval::SegmentEvaluation>;
using DetectArgs = FractionGridArgs<eval::DetectEvaluation>;

struct RetrievalArgs {
  CommonArgs c;
  eval::RetrievalEvaluation options;
  std::string ks = list_text(options.ks);
  void finish_options() {
    options.ks.clear();
    for (double k : parse_list(ks, "--ks")) {
      MGCA_USAGE_CHECK(k >= 1 && k == std::floor(k), "--ks: {} is not a positive integer", k);
      options.ks.push_back(static_cast<int64_t>(k));
    }
  }
};

struct ZeroShotArgs {
  CommonArgs c;
  eval::ZeroShotEvaluation options;
  std::string prompts;
  void finish_options() { options.prompts_file = prompts; }
};

struct ExtractArgs {
  CommonArgs c;
  std::string split;
  std::string what = "features";
  std::string out_file;
};

template <typename Args, typename Evaluation>
int run_evaluation(Args& a, int* argc, char*** argv, const std::vector<std::string>& command,
                   void (*flow)(comm::Communicator&, const Evaluation&)) {
  const auto world = start_world(argc, argv, a.c);
  set_common_options(a.c, command, a.options);
  a.finish_options();
  flow(*world, a.options);
  return kExitOk;
}

int run_extract(ExtractArgs& a, int* argc, char*** argv) {
  const auto world = start_world(argc, argv, a.c);
  eval::FeatureExtraction options;
  options.model = model_sources(a.c);
  options.split = a.split;
  options.what = a.what == "features" ? eval::ExtractedKind::ImageFeatures : eval::ExtractedKind::Embeddings;
  options.out = a.out_file;
  options.batch_size = a.c.batch_size;
  options.compute = compute_options(a.c);
  eval::run_feature_extraction(*world, options);
  return kExitOk;
}

int run_eval(int argc, char** argv) {
  CLI::App app{"Evaluate pretrained encoders: linear probe, retrieval, zero-shot, segmentation, detection (docs/evaluation.md)",
               "mgca eval"};
  app.require_subcommand(1);
  ProbeArgs probe;
  RetrievalArgs retrieval;
  ZeroShotArgs zeroshot;
  ExtractArgs extract;
  SegmentArgs segment;
  DetectArgs detect;

  auto* p = app.add_subcommand("probe", "linear probe on frozen image features, label fractions × seeds");
  add_table_options(*p, probe.c, "probe", /*splits=*/true);
  p->add_option("--fractions", probe.fractions, "label fractions of the training split")->capture_default_str();
  p->add_option("--seeds", probe.options.grid.seeds, "seeds per fraction (mean ± std)")
      ->check(positive_number())->capture_default_str();
  p->add_option("--seed", probe.options.grid.base_seed, "first seed")->capture_default_str();
  p->add_option("--val-fraction", probe.options.val_fraction,
                "hold-out of the training split used when there is no validation split")
      ->check(CLI::Range(0.0, 0.9))->capture_default_str();
  p->add_option("--lr", probe.options.grid.probe.learning_rate, "AdamW learning rate")->capture_default_str();
  p->add_option("--weight-decay", probe.options.grid.probe.weight_decay, "AdamW weight decay")->capture_default_str();
  p->add_option("--probe-batch-size", probe.options.grid.probe.batch_size, "probe mini-batch")
      ->check(positive_number())->capture_default_str();
  p->add_option("--epochs", probe.options.grid.probe.max_epochs, "maximum epochs")
      ->check(positive_number())->capture_default_str();
  p->add_option("--patience", probe.options.grid.probe.patience, "early-stopping patience (epochs)")
      ->check(positive_number())->capture_default_str();
  p->add_option("--min-steps-per-epoch", probe.options.grid.probe.min_steps_per_epoch,
                "an epoch has at least this many steps")->capture_default_str();

  auto* r = app.add_subcommand("retrieval", "image→report and report→image recall@K on held-out pairs");
  add_table_options(*r, retrieval.c, "retrieval", /*splits=*/false);
  r->add_option("--ks", retrieval.ks, "K values")->capture_default_str();
  r->add_flag("--exact-pairs", retrieval.options.exact_pairs,
              "only the pair itself is a match (default: identical reports match too)");

  auto* z = app.add_subcommand("zeroshot", "zero-shot classification from per-class text prompts");
  add_table_options(*z, zeroshot.c, "zeroshot", /*splits=*/false);
  z->add_option("--prompts", zeroshot.prompts,
                "JSON {\"class\": [\"prompt\", ...]} (default: templates on the class names)");

  auto* g = app.add_subcommand("segment", "segmentation decoder on the frozen encoder, label fractions × seeds");
  add_table_options(*g, segment.c, "segment", /*splits=*/true);
  add_head_options(*g, segment.fractions, segment.options.grid,
                   {"label fractions of the training masks", "early-stopping patience (epochs)",
                    "input side (0: the encoder's; ResNet 224)"});

  auto* d = app.add_subcommand("detect", "YOLOv3 head on the frozen encoder, label fractions × seeds");
  add_table_options(*d, detect.c, "detect", /*splits=*/true);
  add_head_options(*d, detect.fractions, detect.options.grid,
                   {"label fractions of the training images", "early-stopping patience (epochs of no better val mAP)",
                    "input side, a multiple of 32 (0: the encoder's; ResNet 224)"});

  auto* x = app.add_subcommand("extract", "extract and cache features or embeddings of one split");
  add_model_options(*x, extract.c);
  x->add_option("--split", extract.split, "dataset folder")->required();
  x->add_option("--what", extract.what, "features (image encoder) or embeddings (both sides)")
      ->check(CLI::IsMember({"features", "embeddings"}))->capture_default_str();
  x->add_option("--out", extract.out_file, "output safetensors (reused when its key matches)")->required();
  x->add_option("--batch-size", extract.c.batch_size, "images per rank per batch")
      ->check(positive_number())->capture_default_str();
  x->add_option("--threads", extract.c.threads, "intra-op threads per rank");
  add_device_option(*x, extract.c.device);
  add_comm_timeout_option(*x, extract.c.comm_timeout);

  if (const int code = parse_arguments(app, argc, argv); code >= 0) return code;
  const auto command = arguments(argc, argv);
  if (p->parsed()) return run_evaluation(probe, &argc, &argv, command, eval::run_probe_evaluation);
  if (r->parsed()) return run_evaluation(retrieval, &argc, &argv, command, eval::run_retrieval_evaluation);
  if (z->parsed()) return run_evaluation(zeroshot, &argc, &argv, command, eval::run_zero_shot_evaluation);
  if (g->parsed()) return run_evaluation(segment, &argc, &argv, command, eval::run_segment_evaluation);
  if (d->parsed()) return run_evaluation(detect, &argc, &argv, command, eval::run_detect_evaluation);
  return run_extract(extract, &argc, &argv);
}

const Registration eval_registration{"eval", "evaluate encoders: linear probe, retrieval, zero-shot, segmentation, detection",
                                run_eval};

}  // namespace
}  // namespace mgca::cli
