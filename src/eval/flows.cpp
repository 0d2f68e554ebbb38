#include "mgca/eval/flows.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>

#include "mgca/eval/data_input.h"
#include "mgca/eval/downstream.h"
#include "mgca/eval/results.h"
#include "mgca/eval/retrieval.h"
#include "mgca/eval/sampling.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"
#include "mgca/util/option_types.h"
#include "mgca/util/threads.h"
#include "mgca/util/torch_compat.h"

namespace fs = std::filesystem;

namespace mgca::eval {

namespace {

// The probe's validation hold-out (no val split) is drawn with seed + this
// offset: its own stream, apart from the label-fraction subsets the grid
// draws with seeds seed, seed + 1, … (a prime, far beyond any --seeds).
constexpr uint64_t kValidationHoldoutSeedOffset = 7919;

// This rank's CPU threads and device, by util's rules.
torch::Device prepare_rank(comm::Communicator& comm, const ComputeOptions& compute) {
  compat::set_cpu_threads(util::choose_thread_count(compute.threads, comm.local_size()));
  return util::choose_device(compute.device, comm.local_rank(), "--device");
}

// The table's column: --dataset-name, else the --data folder's name, else the
// test split's dataset source.
std::string table_column_name(const SplitSources& splits, const EvalSplit& split) {
  if (!splits.dataset_name.empty()) return splits.dataset_name;
  if (!splits.data.empty()) return fs::absolute(splits.data).lexically_normal().filename().string();
  return split.dataset().manifest().source;
}

Targets targets_of_split(const EvalSplit& split, LabelPolicy policy) {
  return apply_label_policy(policy, split.labels(), split.label_names(), split.dir().string());
}

LabelPolicy label_policy_for(const SplitSources& splits, const EvalSplit& reference) {
  if (splits.labels) return *splits.labels;
  return default_label_policy(reference.labels(), reference.label_names());
}

// Rank 0 prints the table and writes the JSON.
void report_results(comm::Communicator& comm, const EvaluationOutput& output, const Results& results,
                    const std::string& title) {
  if (comm.rank() != 0) return;
  const std::string table = results.table(title);
  std::printf("\n%s\n", table.c_str());
  std::fflush(stdout);
  results.write_json(output.results_file, output.command);
  log::info("results written to {}", output.results_file.string());
}

// The rows of `train` the probe fits on and the stratified hold-out it validates on.
struct ProbeHoldout {
  std::vector<int64_t> fit_rows, val_rows;
};

ProbeHoldout hold_out_validation(const Targets& train, int64_t train_size, double fraction, uint64_t seed) {
  ProbeHoldout out;
  const uint64_t holdout_seed = seed + kValidationHoldoutSeedOffset;
  out.val_rows = stratified_fraction(train, fraction, holdout_seed).rows;
  std::vector<char> in_val(static_cast<size_t>(train_size), 0);
  for (int64_t r : out.val_rows) in_val[static_cast<size_t>(r)] = 1;
  for (int64_t r = 0; r < train_size; ++r) {
    if (!in_val[static_cast<size_t>(r)]) out.fit_rows.push_back(r);
  }
  log::info("no validation split: holding out {} of the {} training samples (stratified, seed {})",
            out.val_rows.size(), train_size, holdout_seed);
  return out;
}

nlohmann::json dense_training_info(const HeadTraining& o) {
  return {{"optimizer", "AdamW"}, {"lr", o.learning_rate}, {"weight_decay", o.weight_decay},
          {"batch_size", o.batch_size}, {"max_epochs", o.max_epochs}, {"patience", o.patience}};
}

// What tells segmentation and detection apart in their common flow.
struct DenseFlow {
  const char* kind;            // Results kind, the info key of the training options, the grid's log
  const char* task;            // in errors
  const char* annotations;     // what the splits must hold
  const char* metric;          // the test figure
  const char* validation_key;  // the best validation figure in each run's details
  const char* figure;          // the table title's start
};

// Segmentation and detection: the splits, the models, and for each model's
// frozen image encoder the fraction × seed grid (run_fraction_grid) of
// `train_one` runs on the splits' images at its input size (`load_images`);
// the table and the JSON with `training_info`.
template <typename Evaluation, typename Images, typename Options>
void run_dense_evaluation(
    comm::Communicator& comm, const Evaluation& options, const DenseFlow& flow, const nlohmann::json& training_info,
    Images (*load_images)(const io::Dataset&, int64_t),
    HeadRun (*train_one)(comm::Communicator&, const std::shared_ptr<model::ImageEncoderImpl>&, const Images&,
                         const std::vector<int64_t>&, const Images&, const Images&, const Options&, uint64_t)) {
  const auto& grid = options.grid;
  const auto device = prepare_rank(comm, options.compute);
  const auto& splits = options.splits;
  const auto paths = resolve_splits(splits.data, splits.train, splits.val, splits.test);
  MGCA_CHECK(!paths.train.empty() && !paths.val.empty() && !paths.test.empty(),
             "{} needs train, val and test splits with {} (--data or --train/--val/--test)", flow.task,
             flow.annotations);
  auto models = load_evaluation_models(options.models, device, /*need_text=*/false);
  const auto train = io::Dataset::open(paths.train), val = io::Dataset::open(paths.val),
             test = io::Dataset::open(paths.test);
  const std::string name = splits.dataset_name.empty() ? test->manifest().source : splits.dataset_name;
  Results results(flow.kind);
  results.info()["train"] = paths.train.string();
  results.info()["val"] = paths.val.string();
  results.info()["test"] = paths.test.string();
  results.info()[flow.kind] = training_info;
  for (auto& model : models) {
    const auto encoder = model.image_encoder();
    const int64_t size = downstream_input_size(*encoder, grid.train.input_size);
    const auto tr = load_images(*train, size), va = load_images(*val, size), te = load_images(*test, size);
    run_fraction_grid(
        flow.kind, model.name(), name, flow.metric, flow.validation_key, grid, tr.count,
        [&](uint64_t seed, const std::vector<int64_t>& rows) {
          return train_one(comm, encoder, tr, rows, va, te, grid.train, seed);
        },
        results);
  }
  report_results(comm, options.output, results, fmt::format("{}, frozen encoder ({})", flow.figure, name));
}

}  // namespace

std::vector<EvalModel> load_evaluation_models(const ModelSources& sources, torch::Device device, bool need_text) {
  MGCA_USAGE_CHECK(!sources.checkpoints.empty() || !sources.encoders.empty(),
                   "give at least one --checkpoint or --encoder to evaluate");
  MGCA_USAGE_CHECK(!need_text || sources.encoders.empty(),
                   "--encoder files hold an image encoder alone; retrieval and zero-shot need a "
                   "--checkpoint (image and text encoders with their heads)");
  ModelLoadOptions load;
  load.vocab = sources.vocab;
  std::vector<EvalModel> trained;
  for (const auto& path : sources.checkpoints) trained.push_back(EvalModel::from_checkpoint(path, load));
  for (const auto& path : sources.encoders) trained.push_back(EvalModel::from_exported_encoder(path));
  std::vector<EvalModel> out;
  std::vector<std::string> random_ids;
  std::vector<std::string> names;
  for (auto& model : trained) {
    model.to(device);
    // The probe needs image features only: one random image encoder per
    // architecture, whatever the trained model came from.
    auto random = EvalModel::random_init(model, sources.random_seed, /*image_only=*/!need_text);
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
      random.to(device);
      out.push_back(std::move(random));
    }
  }
  // Random-init rows first, as the papers list them.
  std::stable_partition(out.begin(), out.end(), [](const EvalModel& m) { return m.is_random(); });
  return out;
}

const std::vector<std::string>& default_prompt_templates() {
  // Short report phrases around the class name, as stored reports word findings.
  static const std::vector<std::string> templates = {"{}", "there is {}", "evidence of {}",
                                                     "findings consistent with {}"};
  return templates;
}

std::vector<std::vector<std::string>> class_prompts(const fs::path& prompts_file,
                                                    const std::vector<std::string>& classes) {
  std::vector<std::vector<std::string>> out;
  if (prompts_file.empty()) {
    for (const auto& name : classes) {
      // Lower-cased: stored reports are.
      std::string lower = name;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      std::vector<std::string> prompts;
      for (const auto& t : default_prompt_templates()) prompts.push_back(fmt::format(fmt::runtime(t), lower));
      out.push_back(prompts);
    }
    return out;
  }
  const std::string file = prompts_file.string();
  std::ifstream in(prompts_file);
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

void run_probe_evaluation(comm::Communicator& comm, const ProbeEvaluation& options) {
  const auto device = prepare_rank(comm, options.compute);
  const auto& splits = options.splits;
  const auto paths = resolve_splits(splits.data, splits.train, splits.val, splits.test);
  MGCA_USAGE_CHECK(!paths.train.empty(), "no training split: give --train or --data with a train/ folder");
  MGCA_USAGE_CHECK(!paths.test.empty(), "no test split: give --test or --data with a test/ folder");
  const EvalSplit train(paths.train, "train");
  const EvalSplit test(paths.test, "test");
  std::optional<EvalSplit> val;
  if (!paths.val.empty()) val.emplace(paths.val, "val");
  const auto policy = label_policy_for(splits, train);
  auto models = load_evaluation_models(options.models, device, /*need_text=*/false);

  const auto& grid = options.grid;
  const auto& probe = grid.probe;
  const std::string name = table_column_name(splits, test);
  Results results("probe");
  results.info()["label_policy"] = label_policy_name(policy);
  results.info()["train"] = paths.train.string();
  results.info()["val"] = val ? paths.val.string() : "held out from train";
  results.info()["test"] = paths.test.string();
  results.info()["probe"] = {{"optimizer", "AdamW"},
                             {"lr", probe.learning_rate},
                             {"weight_decay", probe.weight_decay},
                             {"batch_size", probe.batch_size},
                             {"max_epochs", probe.max_epochs},
                             {"patience", probe.patience},
                             {"min_steps_per_epoch", probe.min_steps_per_epoch},
                             {"standardize", probe.standardize}};
  results.info()["models"] = nlohmann::json::array();

  const auto& extraction = options.output.extraction;
  std::optional<Targets> train_targets, val_targets, test_targets;
  ProbeHoldout holdout;
  if (comm.rank() == 0) {
    train_targets = targets_of_split(train, policy);
    test_targets = targets_of_split(test, policy);
    if (val) {
      val_targets = targets_of_split(*val, policy);
    } else {
      holdout = hold_out_validation(*train_targets, train.size(), options.val_fraction, grid.base_seed);
      results.info()["val_holdout_rows"] = holdout.val_rows.size();
    }
  }
  for (auto& model : models) {
    const auto train_x = split_image_features(comm, model, train, extraction);
    const auto test_x = split_image_features(comm, model, test, extraction);
    torch::Tensor val_x;
    if (val) val_x = split_image_features(comm, model, *val, extraction);
    if (comm.rank() != 0) continue;
    results.info()["models"].push_back({{"name", model.name()},
                                        {"method", model.method()},
                                        {"image_encoder", util::enum_name(model.model_config().image_encoder)},
                                        {"identity", model.identity()},
                                        {"feature_dim", model.feature_dim()}});
    LabelledFeatures tr{train_x, *train_targets}, va, te{test_x, *test_targets};
    if (val) {
      va = {val_x, *val_targets};
    } else {
      auto pick = [&](const std::vector<int64_t>& rows) {
        return LabelledFeatures{train_x.index_select(0, torch::tensor(rows, torch::kInt64)),
                                select_rows(*train_targets, rows)};
      };
      tr = pick(holdout.fit_rows);
      va = pick(holdout.val_rows);
    }
    run_probe_grid(model.name(), name, tr, va, te, grid, results);
  }
  report_results(comm, options.output, results,
                 fmt::format("Linear probe on frozen image features ({} labels, {})", name,
                             label_policy_name(policy)));
}

void run_retrieval_evaluation(comm::Communicator& comm, const RetrievalEvaluation& options) {
  const auto device = prepare_rank(comm, options.compute);
  const auto paths = resolve_splits(options.splits.data, "", "", options.splits.test);
  MGCA_USAGE_CHECK(!paths.test.empty(), "no test split: give --test or --data with a test/ folder");
  const EvalSplit test(paths.test, "test");
  auto models = load_evaluation_models(options.models, device, /*need_text=*/true);
  const std::string name = table_column_name(options.splits, test);
  Results results("retrieval");
  std::vector<int64_t> groups;
  if (comm.rank() == 0 && !options.exact_pairs) {
    groups = group_identical(test.reports(0, test.size()));
    int64_t distinct = groups.empty() ? 0 : *std::max_element(groups.begin(), groups.end()) + 1;
    results.info()["distinct_reports"] = distinct;
    log::info("retrieval on {} pairs with {} distinct reports (identical reports count as matches)",
              test.size(), distinct);
  }
  results.info()["test"] = paths.test.string();
  results.info()["identical_reports_match"] = !options.exact_pairs;
  results.info()["models"] = nlohmann::json::array();
  for (auto& model : models) {
    const auto [image, report] = split_embeddings(comm, model, test, options.output.extraction);
    if (comm.rank() != 0) continue;
    results.info()["models"].push_back({{"name", model.name()}, {"identity", model.identity()}});
    add_retrieval_results(model.name(), name, evaluate_retrieval(image, report, groups, options.ks), results);
  }
  report_results(comm, options.output, results,
                 fmt::format("Image→report (I→R) and report→image (R→I) retrieval on {} ({} pairs)", name,
                             test.size()));
}

void run_zero_shot_evaluation(comm::Communicator& comm, const ZeroShotEvaluation& options) {
  const auto device = prepare_rank(comm, options.compute);
  const auto paths = resolve_splits(options.splits.data, "", "", options.splits.test);
  MGCA_USAGE_CHECK(!paths.test.empty(), "no test split: give --test or --data with a test/ folder");
  const EvalSplit test(paths.test, "test");
  const auto policy = label_policy_for(options.splits, test);
  auto models = load_evaluation_models(options.models, device, /*need_text=*/true);
  const std::string name = table_column_name(options.splits, test);
  Results results("zeroshot");
  std::optional<Targets> targets;
  std::vector<std::vector<std::string>> prompts;
  if (comm.rank() == 0) {
    targets = targets_of_split(test, policy);
    prompts = class_prompts(options.prompts_file, targets->names);
    nlohmann::json p = nlohmann::json::object();
    for (size_t k = 0; k < prompts.size(); ++k) p[targets->names[k]] = prompts[k];
    results.info()["prompts"] = p;
  }
  results.info()["label_policy"] = label_policy_name(policy);
  results.info()["test"] = paths.test.string();
  for (auto& model : models) {
    const auto [image, report] = split_embeddings(comm, model, test, options.output.extraction);
    if (comm.rank() != 0) continue;
    std::vector<torch::Tensor> classes;
    for (const auto& list : prompts) classes.push_back(class_embedding(text_embeddings(model, list)));
    const auto scores = zero_shot_scores(image, torch::stack(classes));
    add_zero_shot_results(model.name(), name, evaluate_zero_shot(scores, *targets), results);
  }
  report_results(comm, options.output, results,
                 fmt::format("Zero-shot classification from prompts on {} ({})", name, label_policy_name(policy)));
}

void run_segment_evaluation(comm::Communicator& comm, const SegmentEvaluation& options) {
  auto info = dense_training_info(options.grid.train);
  info["loss"] = "10 focal(gamma 2) - log dice";
  run_dense_evaluation(comm, options,
                       {"segment", "segmentation", "masks", "Dice", "best_val_loss", "Segmentation Dice"}, info,
                       load_masked_images, train_segmenter);
}

void run_detect_evaluation(comm::Communicator& comm, const DetectEvaluation& options) {
  const auto& yolo = options.grid.train.yolo;
  auto info = dense_training_info(options.grid.train);
  info.update({{"head", "YOLOv3 (MGCA ModelMain)"}, {"conf_threshold", yolo.conf_threshold},
               {"nms_threshold", yolo.nms_threshold}, {"map_iou_thresholds", mgca_map_iou_thresholds()}});
  run_dense_evaluation(comm, options,
                       {"detect", "detection", "boxes", "mAP", "best_val_map", "Detection mAP (IoU 0.4-0.75)"}, info,
                       load_boxed_images, train_detector);
}

void run_feature_extraction(comm::Communicator& comm, const FeatureExtraction& options) {
  const auto device = prepare_rank(comm, options.compute);
  const EvalSplit split(options.split, "split");
  ModelLoadOptions load;
  load.vocab = options.model.vocab;
  const auto& sources = options.model;
  MGCA_USAGE_CHECK(sources.checkpoints.size() + sources.encoders.size() == 1,
                   "extract takes exactly one --checkpoint or --encoder");
  EvalModel model = !sources.checkpoints.empty() ? EvalModel::from_checkpoint(sources.checkpoints[0], load)
                                                 : EvalModel::from_exported_encoder(sources.encoders[0]);
  model.to(device);
  // The output file is the cache: --out FILE is reused when its key matches.
  ExtractionOptions extraction;
  extraction.batch_size = options.batch_size;
  const fs::path& out = options.out;
  const bool features = options.what == ExtractedKind::ImageFeatures;
  const std::string kind = features ? "image-features" : "embeddings";
  extraction.cache_dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  const auto natural = cache_path(extraction, model, split, kind);
  if (features) {
    const auto x = split_image_features(comm, model, split, extraction);
    if (comm.rank() == 0) log::info("features [{}, {}]", x.size(0), x.size(1));
  } else {
    const auto [v, t] = split_embeddings(comm, model, split, extraction);
    if (comm.rank() == 0) log::info("embeddings [{}, {}] x 2", v.size(0), v.size(1));
  }
  if (comm.rank() == 0 && fs::absolute(natural) != fs::absolute(out)) {
    fs::copy_file(natural, out, fs::copy_options::overwrite_existing);
    log::info("wrote {}", out.string());
  }
}

}  // namespace mgca::eval
