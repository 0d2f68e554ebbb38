// mgca eval: judge pretrained encoders as the MGCA/ConVIRT papers do
// (docs/evaluation.md).
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
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "command.h"
#include "mgca/comm/communicator.h"
#include "mgca/comm/runtime.h"
#include "mgca/eval/data_input.h"
#include "mgca/eval/downstream.h"
#include "mgca/eval/detect_protocol.h"
#include "mgca/eval/encoder.h"
#include "mgca/eval/pipeline.h"
#include "mgca/eval/protocol.h"
#include "mgca/eval/sampling.h"
#include "mgca/eval/segment_protocol.h"
#include "mgca/util/device.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"
#include "mgca/util/torch_compat.h"
#include "mgca/util/threads.h"

namespace fs = std::filesystem;

namespace mgca::cli {
namespace {

using eval::EvalModel;
using eval::EvalSplit;

// Options shared by the subcommands.
struct Common {
  std::vector<std::string> checkpoints, encoders;
  std::string vocab;
  uint64_t random_seed = 0;
  std::string data, train, val, test;
  std::string labels = "auto";
  std::string dataset_name;
  int64_t batch_size = 64;
  std::string cache_dir = "eval-cache";
  bool no_cache = false;
  std::string out;
  int threads = 0;
  std::string device = "auto";
  double comm_timeout = 0;  // set by add_comm_timeout_option
};

void add_model_options(CLI::App& app, Common& c) {
  app.add_option("--checkpoint", c.checkpoints,
                 "checkpoint folder or its model.safetensors (repeatable)");
  app.add_option("--encoder", c.encoders,
                 "exported image encoder (safetensors, docs/evaluation.md) (repeatable)");
  app.add_option("--vocab", c.vocab, "WordPiece vocabulary (default: the run config's text.vocab)");
  app.add_option("--random-seed", c.random_seed,
                 "seed of the random initialisation reported beside each architecture")
      ->capture_default_str();
}

void add_data_options(CLI::App& app, Common& c, bool splits) {
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

void add_run_options(CLI::App& app, Common& c, const std::string& kind) {
  app.add_option("--batch-size", c.batch_size, "images per rank per extraction batch")
      ->check(positive_number())
      ->capture_default_str();
  app.add_option("--cache-dir", c.cache_dir, "feature cache folder")->capture_default_str();
  app.add_flag("--no-cache", c.no_cache, "extract again and write no cache");
  c.out = "eval-" + kind + ".json";
  app.add_option("--out", c.out, "results JSON")->capture_default_str();
  app.add_option("--threads", c.threads, "intra-op threads per rank (0: cores / ranks on the host)");
  add_comm_timeout_option(app, c.comm_timeout);
  app.add_option("--device", c.device, "auto (GPU by local rank when present), cpu, cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
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

struct Session {
  std::shared_ptr<comm::Communicator> comm;
  torch::Device device = torch::kCPU;
};

Session start(int* argc, char*** argv, const Common& c) {
  comm::init(argc, argv);
  Session s;
  comm::CommOptions options;
  options.timeout_seconds = c.comm_timeout;
  s.comm = comm::Communicator::world(options);
  compat::set_cpu_threads(util::choose_thread_count(c.threads, s.comm->local_size()));
  s.device = util::choose_device(util::parse_device_choice(c.device, "--device"), s.comm->local_rank(), "--device");
  return s;
}

// The trained models in command-line order, each followed by a random
// initialisation of its architecture (one per distinct architecture).
std::vector<EvalModel> load_models(const Common& c, const Session& s, bool need_text) {
  MGCA_USAGE_CHECK(!c.checkpoints.empty() || !c.encoders.empty(),
             "give at least one --checkpoint or --encoder to evaluate");
  MGCA_USAGE_CHECK(!need_text || c.encoders.empty(),
             "--encoder files hold an image encoder alone; retrieval and zero-shot need a "
             "--checkpoint (image and text encoders with their heads)");
  eval::ModelLoadOptions load;
  load.vocab = c.vocab;
  std::vector<EvalModel> trained;
  for (const auto& path : c.checkpoints) trained.push_back(EvalModel::from_checkpoint(path, load));
  for (const auto& path : c.encoders) trained.push_back(EvalModel::from_exported_encoder(path));
  std::vector<EvalModel> out;
  std::vector<std::string> random_ids;
  std::vector<std::string> names;
  for (auto& model : trained) {
    model.to(s.device);
    // The probe needs image features only: one random image encoder per
    // architecture, whatever the trained model came from.
    auto random = EvalModel::random_init(model, c.random_seed, /*image_only=*/!need_text);
    const std::string id = random.identity();
    names.push_back(model.name());
    out.push_back(std::move(model));
    if (std::find(random_ids.begin(), random_ids.end(), id) == random_ids.end()) {
      random_ids.push_back(id);
      // Two random rows of one image architecture (different text sides) get distinct names.
      std::string name = random.name();
      for (int k = 2; std::find(names.begin(), names.end(), name) != names.end(); ++k) {
        name = random.name() + " #" + std::to_string(k);
      }
      random.set_name(name);
      names.push_back(name);
      random.to(s.device);
      out.push_back(std::move(random));
    }
  }
  // Random-init rows first, as the papers list them.
  std::stable_partition(out.begin(), out.end(), [](const EvalModel& m) { return m.is_random(); });
  return out;
}

eval::ExtractionOptions extraction(const Common& c) {
  eval::ExtractionOptions o;
  o.batch_size = c.batch_size;
  if (!c.no_cache) o.cache_dir = c.cache_dir;
  return o;
}

std::string dataset_name(const Common& c, const EvalSplit& split) {
  if (!c.dataset_name.empty()) return c.dataset_name;
  if (!c.data.empty()) return fs::absolute(c.data).lexically_normal().filename().string();
  return split.dataset().manifest().source;
}

eval::Targets targets_of(const EvalSplit& split, eval::LabelPolicy policy) {
  return eval::apply_label_policy(policy, split.labels(), split.label_names(), split.dir().string());
}

eval::LabelPolicy policy_for(const Common& c, const EvalSplit& reference) {
  if (c.labels != "auto") return eval::parse_label_policy(c.labels);
  return eval::default_label_policy(reference.labels(), reference.label_names());
}

void finish(const Common& c, const Session& s, eval::Results& results, const std::string& title,
            const std::vector<std::string>& argv) {
  if (s.comm->rank() != 0) return;
  const std::string table = results.table(title);
  std::printf("\n%s\n", table.c_str());
  std::fflush(stdout);
  results.write_json(c.out, argv);
  log::info("results written to {}", c.out);
}

std::vector<std::string> arguments(int argc, char** argv) {
  std::vector<std::string> out = {"mgca", "eval"};
  for (int i = 1; i < argc; ++i) out.push_back(argv[i]);
  return out;
}

// ---------------------------------------------------------------- probe

struct ProbeArgs {
  Common c;
  std::string fractions = "0.01,0.1,1";
  int64_t seeds = 3;
  uint64_t seed = 0;
  double val_fraction = 0.1;
  eval::ProbeOptions probe;
};

int run_probe(ProbeArgs& a, int* argc, char*** argv, const std::vector<std::string>& command) {
  const auto s = start(argc, argv, a.c);
  const auto paths = eval::resolve_splits(a.c.data, a.c.train, a.c.val, a.c.test);
  MGCA_USAGE_CHECK(!paths.train.empty(), "no training split: give --train or --data with a train/ folder");
  MGCA_USAGE_CHECK(!paths.test.empty(), "no test split: give --test or --data with a test/ folder");
  const EvalSplit train(paths.train, "train");
  const EvalSplit test(paths.test, "test");
  std::optional<EvalSplit> val;
  if (!paths.val.empty()) val.emplace(paths.val, "val");
  const auto policy = policy_for(a.c, train);
  auto models = load_models(a.c, s, /*need_text=*/false);

  eval::ProbeGridOptions grid;
  grid.fractions = parse_list(a.fractions, "--fractions");
  grid.seeds = a.seeds;
  grid.base_seed = a.seed;
  grid.probe = a.probe;
  const std::string name = dataset_name(a.c, test);
  eval::Results results("probe");
  results.info()["label_policy"] = eval::label_policy_name(policy);
  results.info()["train"] = paths.train.string();
  results.info()["val"] = val ? paths.val.string() : "held out from train";
  results.info()["test"] = paths.test.string();
  results.info()["probe"] = {{"optimizer", "AdamW"},
                             {"lr", a.probe.learning_rate},
                             {"weight_decay", a.probe.weight_decay},
                             {"batch_size", a.probe.batch_size},
                             {"max_epochs", a.probe.max_epochs},
                             {"patience", a.probe.patience},
                             {"min_steps_per_epoch", a.probe.min_steps_per_epoch},
                             {"standardize", a.probe.standardize}};
  results.info()["models"] = nlohmann::json::array();

  const auto options = extraction(a.c);
  std::optional<eval::Targets> train_targets, val_targets, test_targets;
  std::vector<int64_t> fit_rows, val_rows;
  if (s.comm->rank() == 0) {
    train_targets = targets_of(train, policy);
    test_targets = targets_of(test, policy);
    if (val) {
      val_targets = targets_of(*val, policy);
    } else {
      // No validation split: a stratified, seeded hold-out of the training split.
      const auto held = eval::stratified_fraction(*train_targets, a.val_fraction, a.seed + 7919);
      val_rows = held.rows;
      std::vector<char> in_val(static_cast<size_t>(train.size()), 0);
      for (int64_t r : val_rows) in_val[static_cast<size_t>(r)] = 1;
      for (int64_t r = 0; r < train.size(); ++r) {
        if (!in_val[static_cast<size_t>(r)]) fit_rows.push_back(r);
      }
      log::info("no validation split: holding out {} of the {} training samples (stratified, seed {})",
                val_rows.size(), train.size(), a.seed + 7919);
      results.info()["val_holdout_rows"] = val_rows.size();
    }
  }
  for (auto& model : models) {
    const auto train_x = eval::split_image_features(*s.comm, model, train, options);
    const auto test_x = eval::split_image_features(*s.comm, model, test, options);
    torch::Tensor val_x;
    if (val) val_x = eval::split_image_features(*s.comm, model, *val, options);
    if (s.comm->rank() != 0) continue;
    results.info()["models"].push_back({{"name", model.name()},
                                        {"method", model.method()},
                                        {"image_encoder", util::enum_name(model.model_config().image_encoder)},
                                        {"identity", model.identity()},
                                        {"feature_dim", model.feature_dim()}});
    eval::LabelledFeatures tr{train_x, *train_targets}, va, te{test_x, *test_targets};
    if (val) {
      va = {val_x, *val_targets};
    } else {
      auto pick = [&](const std::vector<int64_t>& rows) {
        return eval::LabelledFeatures{train_x.index_select(0, torch::tensor(rows, torch::kInt64)),
                                      eval::select_rows(*train_targets, rows)};
      };
      tr = pick(fit_rows);
      va = pick(val_rows);
    }
    eval::run_probe_grid(model.name(), name, tr, va, te, grid, results);
  }
  finish(a.c, s, results,
         fmt::format("Linear probe on frozen image features ({} labels, {})", name,
                     eval::label_policy_name(policy)),
         command);
  return kExitOk;
}

// ---------------------------------------------------------------- retrieval

struct RetrievalArgs {
  Common c;
  std::string ks = "1,5,10";
  bool exact_pairs = false;
};

int run_retrieval(RetrievalArgs& a, int* argc, char*** argv, const std::vector<std::string>& command) {
  const auto s = start(argc, argv, a.c);
  const auto paths = eval::resolve_splits(a.c.data, "", "", a.c.test);
  MGCA_USAGE_CHECK(!paths.test.empty(), "no test split: give --test or --data with a test/ folder");
  const EvalSplit test(paths.test, "test");
  auto models = load_models(a.c, s, /*need_text=*/true);
  std::vector<int64_t> ks;
  for (double k : parse_list(a.ks, "--ks")) {
    MGCA_USAGE_CHECK(k >= 1 && k == std::floor(k), "--ks: {} is not a positive integer", k);
    ks.push_back(static_cast<int64_t>(k));
  }
  const std::string name = dataset_name(a.c, test);
  eval::Results results("retrieval");
  std::vector<int64_t> groups;
  if (s.comm->rank() == 0 && !a.exact_pairs) {
    groups = eval::group_identical(test.reports(0, test.size()));
    int64_t distinct = groups.empty() ? 0 : *std::max_element(groups.begin(), groups.end()) + 1;
    results.info()["distinct_reports"] = distinct;
    log::info("retrieval on {} pairs with {} distinct reports (identical reports count as matches)",
              test.size(), distinct);
  }
  results.info()["test"] = paths.test.string();
  results.info()["identical_reports_match"] = !a.exact_pairs;
  results.info()["models"] = nlohmann::json::array();
  for (auto& model : models) {
    const auto [image, report] = eval::split_embeddings(*s.comm, model, test, extraction(a.c));
    if (s.comm->rank() != 0) continue;
    results.info()["models"].push_back({{"name", model.name()}, {"identity", model.identity()}});
    add_retrieval_results(model.name(), name, eval::evaluate_retrieval(image, report, groups, ks),
                          results);
  }
  finish(a.c, s, results,
         fmt::format("Image→report (I→R) and report→image (R→I) retrieval on {} ({} pairs)", name,
                     test.size()),
         command);
  return kExitOk;
}

// ---------------------------------------------------------------- zero-shot

struct ZeroShotArgs {
  Common c;
  std::string prompts;
};

const std::vector<std::string>& prompt_templates() {
  static const std::vector<std::string> templates = {"{}", "there is {}", "evidence of {}",
                                                     "findings consistent with {}"};
  return templates;
}

// Class → prompts: from --prompts (JSON object of arrays of strings) or the templates.
std::vector<std::vector<std::string>> class_prompts(const std::string& file,
                                                    const std::vector<std::string>& classes) {
  std::vector<std::vector<std::string>> out;
  if (file.empty()) {
    for (const auto& name : classes) {
      std::string lower = name;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      std::vector<std::string> prompts;
      for (const auto& t : prompt_templates()) prompts.push_back(fmt::format(fmt::runtime(t), lower));
      out.push_back(prompts);
    }
    return out;
  }
  std::ifstream in(file);
  MGCA_CHECK(in.good(), "cannot read prompts file {}", file);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& error) {
    MGCA_FAIL("prompts file {}: not valid JSON ({})", file, error.what());
  }
  MGCA_CHECK(j.is_object(), "prompts file {}: expected an object {{\"class\": [\"prompt\", ...]}}", file);
  for (const auto& name : classes) {
    MGCA_CHECK(j.contains(name) && j[name].is_array() && !j[name].empty(),
               "prompts file {}: no prompt list for class '{}'", file, name);
    std::vector<std::string> prompts;
    for (const auto& p : j[name]) {
      MGCA_CHECK(p.is_string(), "prompts file {}: class '{}' has a prompt that is not a string", file, name);
      prompts.push_back(p.get<std::string>());
    }
    out.push_back(prompts);
  }
  return out;
}

int run_zeroshot(ZeroShotArgs& a, int* argc, char*** argv, const std::vector<std::string>& command) {
  const auto s = start(argc, argv, a.c);
  const auto paths = eval::resolve_splits(a.c.data, "", "", a.c.test);
  MGCA_USAGE_CHECK(!paths.test.empty(), "no test split: give --test or --data with a test/ folder");
  const EvalSplit test(paths.test, "test");
  const auto policy = policy_for(a.c, test);
  auto models = load_models(a.c, s, /*need_text=*/true);
  const std::string name = dataset_name(a.c, test);
  eval::Results results("zeroshot");
  std::optional<eval::Targets> targets;
  std::vector<std::vector<std::string>> prompts;
  if (s.comm->rank() == 0) {
    targets = targets_of(test, policy);
    prompts = class_prompts(a.prompts, targets->names);
    nlohmann::json p = nlohmann::json::object();
    for (size_t k = 0; k < prompts.size(); ++k) p[targets->names[k]] = prompts[k];
    results.info()["prompts"] = p;
  }
  results.info()["label_policy"] = eval::label_policy_name(policy);
  results.info()["test"] = paths.test.string();
  for (auto& model : models) {
    const auto [image, report] = eval::split_embeddings(*s.comm, model, test, extraction(a.c));
    if (s.comm->rank() != 0) continue;
    std::vector<torch::Tensor> classes;
    for (const auto& list : prompts) classes.push_back(eval::class_embedding(eval::text_embeddings(model, list)));
    const auto scores = eval::zero_shot_scores(image, torch::stack(classes));
    add_zero_shot_results(model.name(), name, eval::evaluate_zero_shot(scores, *targets), results);
  }
  finish(a.c, s, results,
         fmt::format("Zero-shot classification from prompts on {} ({})", name,
                     eval::label_policy_name(policy)),
         command);
  return kExitOk;
}

// ---------------------------------------------------------------- extract

struct ExtractArgs {
  Common c;
  std::string split;
  std::string what = "features";
  std::string out_file;
};

int run_extract(ExtractArgs& a, int* argc, char*** argv, const std::vector<std::string>&) {
  const auto s = start(argc, argv, a.c);
  const EvalSplit split(a.split, "split");
  eval::ModelLoadOptions load;
  load.vocab = a.c.vocab;
  MGCA_USAGE_CHECK(a.c.checkpoints.size() + a.c.encoders.size() == 1,
             "extract takes exactly one --checkpoint or --encoder");
  EvalModel model = !a.c.checkpoints.empty() ? EvalModel::from_checkpoint(a.c.checkpoints[0], load)
                                             : EvalModel::from_exported_encoder(a.c.encoders[0]);
  model.to(s.device);
  // The output file is the cache: --out FILE is reused when its key matches.
  eval::ExtractionOptions options;
  options.batch_size = a.c.batch_size;
  const fs::path out = a.out_file;
  const std::string kind = a.what == "features" ? "image-features" : "embeddings";
  options.cache_dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  const auto natural = eval::cache_path(options, model, split, kind);
  if (a.what == "features") {
    const auto x = eval::split_image_features(*s.comm, model, split, options);
    if (s.comm->rank() == 0) log::info("features [{}, {}]", x.size(0), x.size(1));
  } else {
    const auto [v, t] = eval::split_embeddings(*s.comm, model, split, options);
    if (s.comm->rank() == 0) log::info("embeddings [{}, {}] x 2", v.size(0), v.size(1));
  }
  if (s.comm->rank() == 0 && fs::absolute(natural) != fs::absolute(out)) {
    fs::copy_file(natural, out, fs::copy_options::overwrite_existing);
    log::info("wrote {}", out.string());
  }
  return kExitOk;
}

// ---------------------------------------------------------------- segment

struct SegmentArgs {
  Common c;
  std::string fractions = "0.01,0.1,1";
  eval::SegmentGridOptions grid;
};

int run_segment(SegmentArgs& a, int* argc, char*** argv, const std::vector<std::string>& command) {
  const auto s = start(argc, argv, a.c);
  const auto paths = eval::resolve_splits(a.c.data, a.c.train, a.c.val, a.c.test);
  MGCA_CHECK(!paths.train.empty() && !paths.val.empty() && !paths.test.empty(),
             "segmentation needs train, val and test splits with masks (--data or --train/--val/--test)");
  a.grid.fractions = parse_list(a.fractions, "--fractions");
  auto models = load_models(a.c, s, /*need_text=*/false);
  const auto train = io::Dataset::open(paths.train), val = io::Dataset::open(paths.val),
             test = io::Dataset::open(paths.test);
  const std::string name = a.c.dataset_name.empty() ? test->manifest().source : a.c.dataset_name;
  eval::Results results("segment");
  results.info()["train"] = paths.train.string();
  results.info()["val"] = paths.val.string();
  results.info()["test"] = paths.test.string();
  const auto& o = a.grid.train;
  results.info()["segment"] = {{"optimizer", "AdamW"}, {"lr", o.learning_rate}, {"weight_decay", o.weight_decay},
                               {"batch_size", o.batch_size}, {"max_epochs", o.max_epochs},
                               {"patience", o.patience}, {"loss", "10 focal(gamma 2) - log dice"}};
  for (auto& model : models) {
    const auto encoder = model.image_encoder();
    const int64_t size = eval::downstream_input_size(*encoder, o.input_size);
    const auto tr = eval::load_masked_images(*train, size), va = eval::load_masked_images(*val, size),
               te = eval::load_masked_images(*test, size);
    eval::run_segment_grid(*s.comm, model.name(), encoder, name, tr, va, te, a.grid, results);
  }
  finish(a.c, s, results, fmt::format("Segmentation Dice, frozen encoder ({})", name), command);
  return kExitOk;
}

// ---------------------------------------------------------------- detect

struct DetectArgs {
  Common c;
  std::string fractions = "0.01,0.1,1";
  eval::DetectGridOptions grid;
};

int run_detect(DetectArgs& a, int* argc, char*** argv, const std::vector<std::string>& command) {
  const auto s = start(argc, argv, a.c);
  const auto paths = eval::resolve_splits(a.c.data, a.c.train, a.c.val, a.c.test);
  MGCA_CHECK(!paths.train.empty() && !paths.val.empty() && !paths.test.empty(),
             "detection needs train, val and test splits with boxes (--data or --train/--val/--test)");
  a.grid.fractions = parse_list(a.fractions, "--fractions");
  auto models = load_models(a.c, s, /*need_text=*/false);
  const auto train = io::Dataset::open(paths.train), val = io::Dataset::open(paths.val),
             test = io::Dataset::open(paths.test);
  const std::string name = a.c.dataset_name.empty() ? test->manifest().source : a.c.dataset_name;
  eval::Results results("detect");
  results.info()["train"] = paths.train.string();
  results.info()["val"] = paths.val.string();
  results.info()["test"] = paths.test.string();
  const auto& o = a.grid.train;
  results.info()["detect"] = {{"optimizer", "AdamW"}, {"lr", o.learning_rate}, {"weight_decay", o.weight_decay},
                              {"batch_size", o.batch_size}, {"max_epochs", o.max_epochs}, {"patience", o.patience},
                              {"head", "YOLOv3 (MGCA ModelMain)"}, {"conf_threshold", o.yolo.conf_threshold},
                              {"nms_threshold", o.yolo.nms_threshold},
                              {"map_iou_thresholds", eval::mgca_map_iou_thresholds()}};
  for (auto& model : models) {
    const auto encoder = model.image_encoder();
    const int64_t size = eval::downstream_input_size(*encoder, o.input_size);
    const auto tr = eval::load_boxed_images(*train, size), va = eval::load_boxed_images(*val, size),
               te = eval::load_boxed_images(*test, size);
    eval::run_detect_grid(*s.comm, model.name(), encoder, name, tr, va, te, a.grid, results);
  }
  finish(a.c, s, results, fmt::format("Detection mAP (IoU 0.4-0.75), frozen encoder ({})", name), command);
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
  add_model_options(*p, probe.c);
  add_data_options(*p, probe.c, true);
  add_run_options(*p, probe.c, "probe");
  p->add_option("--fractions", probe.fractions, "label fractions of the training split")->capture_default_str();
  p->add_option("--seeds", probe.seeds, "seeds per fraction (mean ± std)")
      ->check(positive_number())->capture_default_str();
  p->add_option("--seed", probe.seed, "first seed")->capture_default_str();
  p->add_option("--val-fraction", probe.val_fraction,
                "hold-out of the training split used when there is no validation split")
      ->check(CLI::Range(0.0, 0.9))->capture_default_str();
  p->add_option("--lr", probe.probe.learning_rate, "AdamW learning rate")->capture_default_str();
  p->add_option("--weight-decay", probe.probe.weight_decay, "AdamW weight decay")->capture_default_str();
  p->add_option("--probe-batch-size", probe.probe.batch_size, "probe mini-batch")
      ->check(positive_number())->capture_default_str();
  p->add_option("--epochs", probe.probe.max_epochs, "maximum epochs")
      ->check(positive_number())->capture_default_str();
  p->add_option("--patience", probe.probe.patience, "early-stopping patience (epochs)")
      ->check(positive_number())->capture_default_str();
  p->add_option("--min-steps-per-epoch", probe.probe.min_steps_per_epoch,
                "an epoch has at least this many steps")->capture_default_str();

  auto* r = app.add_subcommand("retrieval", "image→report and report→image recall@K on held-out pairs");
  add_model_options(*r, retrieval.c);
  add_data_options(*r, retrieval.c, false);
  r->add_option("--data", retrieval.c.data, "folder with a test/ dataset folder");
  add_run_options(*r, retrieval.c, "retrieval");
  r->add_option("--ks", retrieval.ks, "K values")->capture_default_str();
  r->add_flag("--exact-pairs", retrieval.exact_pairs,
              "only the pair itself is a match (default: identical reports match too)");

  auto* z = app.add_subcommand("zeroshot", "zero-shot classification from per-class text prompts");
  add_model_options(*z, zeroshot.c);
  add_data_options(*z, zeroshot.c, false);
  z->add_option("--data", zeroshot.c.data, "folder with a test/ dataset folder");
  add_run_options(*z, zeroshot.c, "zeroshot");
  z->add_option("--prompts", zeroshot.prompts,
                "JSON {\"class\": [\"prompt\", ...]} (default: templates on the class names)");

  auto* g = app.add_subcommand("segment", "segmentation decoder on the frozen encoder, label fractions × seeds");
  add_model_options(*g, segment.c);
  add_data_options(*g, segment.c, true);
  add_run_options(*g, segment.c, "segment");
  g->add_option("--fractions", segment.fractions, "label fractions of the training masks")->capture_default_str();
  g->add_option("--seeds", segment.grid.seeds, "seeds per fraction")->check(CLI::PositiveNumber)->capture_default_str();
  g->add_option("--seed", segment.grid.base_seed, "first seed")->capture_default_str();
  g->add_option("--lr", segment.grid.train.learning_rate, "AdamW learning rate")->capture_default_str();
  g->add_option("--weight-decay", segment.grid.train.weight_decay, "AdamW weight decay")->capture_default_str();
  g->add_option("--train-batch-size", segment.grid.train.batch_size, "global training batch")
      ->check(CLI::PositiveNumber)->capture_default_str();
  g->add_option("--epochs", segment.grid.train.max_epochs, "maximum epochs")
      ->check(CLI::PositiveNumber)->capture_default_str();
  g->add_option("--patience", segment.grid.train.patience, "early-stopping patience (epochs)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  g->add_option("--input-size", segment.grid.train.input_size, "input side (0: the encoder's; ResNet 224)")
      ->capture_default_str();

  auto* d = app.add_subcommand("detect", "YOLOv3 head on the frozen encoder, label fractions × seeds");
  add_model_options(*d, detect.c);
  add_data_options(*d, detect.c, true);
  add_run_options(*d, detect.c, "detect");
  d->add_option("--fractions", detect.fractions, "label fractions of the training images")->capture_default_str();
  d->add_option("--seeds", detect.grid.seeds, "seeds per fraction")->check(CLI::PositiveNumber)->capture_default_str();
  d->add_option("--seed", detect.grid.base_seed, "first seed")->capture_default_str();
  d->add_option("--lr", detect.grid.train.learning_rate, "AdamW learning rate")->capture_default_str();
  d->add_option("--weight-decay", detect.grid.train.weight_decay, "AdamW weight decay")->capture_default_str();
  d->add_option("--train-batch-size", detect.grid.train.batch_size, "global training batch")
      ->check(CLI::PositiveNumber)->capture_default_str();
  d->add_option("--epochs", detect.grid.train.max_epochs, "maximum epochs")
      ->check(CLI::PositiveNumber)->capture_default_str();
  d->add_option("--patience", detect.grid.train.patience, "early-stopping patience (epochs of no better val mAP)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  d->add_option("--input-size", detect.grid.train.input_size,
                "input side, a multiple of 32 (0: the encoder's; ResNet 224)")->capture_default_str();

  auto* x = app.add_subcommand("extract", "extract and cache features or embeddings of one split");
  add_model_options(*x, extract.c);
  x->add_option("--split", extract.split, "dataset folder")->required();
  x->add_option("--what", extract.what, "features (image encoder) or embeddings (both sides)")
      ->check(CLI::IsMember({"features", "embeddings"}))->capture_default_str();
  x->add_option("--out", extract.out_file, "output safetensors (reused when its key matches)")->required();
  x->add_option("--batch-size", extract.c.batch_size, "images per rank per batch")
      ->check(positive_number())->capture_default_str();
  x->add_option("--threads", extract.c.threads, "intra-op threads per rank");
  x->add_option("--device", extract.c.device, "auto, cpu, cuda")->capture_default_str();
  add_comm_timeout_option(*x, extract.c.comm_timeout);

  if (const int code = parse_arguments(app, argc, argv); code >= 0) return code;
  const auto command = arguments(argc, argv);
  if (p->parsed()) return run_probe(probe, &argc, &argv, command);
  if (r->parsed()) return run_retrieval(retrieval, &argc, &argv, command);
  if (z->parsed()) return run_zeroshot(zeroshot, &argc, &argv, command);
  if (g->parsed()) return run_segment(segment, &argc, &argv, command);
  if (d->parsed()) return run_detect(detect, &argc, &argv, command);
  return run_extract(extract, &argc, &argv, command);
}

const Registration eval_registration{"eval", "evaluate encoders: linear probe, retrieval, zero-shot, segmentation, detection",
                                run_eval};

}  // namespace
}  // namespace mgca::cli
