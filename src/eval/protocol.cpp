#include "mgca/eval/protocol.h"

#include <torch/torch.h>

#include <cmath>

#include "mgca/eval/sampling.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"

namespace mgca::eval {

std::string fraction_label(double fraction) {
  const double percent = fraction * 100.0;
  if (std::abs(percent - std::round(percent)) < 1e-9) return fmt::format("{:.0f}%", percent);
  return fmt::format("{:g}%", percent);
}

namespace {

nlohmann::json auroc_json(const AurocReport& report) {
  nlohmann::json j = nlohmann::json::object();
  for (size_t i = 0; i < report.labels.size(); ++i) {
    j[report.labels[i]] = {{"auroc", report.per_label[i]},
                           {"positives", report.positives[i]},
                           {"negatives", report.negatives[i]}};
  }
  return j;
}

// A "chance" row beside the methods, once per (dataset, setting).
void add_chance(const std::string& dataset, const std::string& setting, const std::string& metric,
                double value, Results& results) {
  for (const auto& e : results.entries()) {
    if (e.method == "chance" && e.dataset == dataset && e.setting == setting) return;
  }
  ResultEntry entry;
  entry.method = "chance";
  entry.dataset = dataset;
  entry.setting = setting;
  entry.metric = metric;
  entry.values = {value};
  entry.details = {{"what", "expected value of a uniformly random ranking / guess"}};
  results.add(std::move(entry));
}

}  // namespace

void run_probe_grid(const std::string& method, const std::string& dataset,
                    const LabelledFeatures& train, const LabelledFeatures& val,
                    const LabelledFeatures& test, const ProbeGridOptions& options,
                    Results& results) {
  MGCA_CHECK(!options.fractions.empty() && options.seeds > 0,
             "linear probe of '{}' on '{}': need at least one fraction and one seed", method, dataset);
  MGCA_CHECK(train.targets.kind == test.targets.kind && train.targets.names == test.targets.names,
             "linear probe of '{}' on '{}': the training and test splits have different labels",
             method, dataset);
  const bool multilabel = train.targets.kind == TaskKind::MultiLabel;
  for (double fraction : options.fractions) {
    ResultEntry entry;
    entry.method = method;
    entry.dataset = dataset;
    entry.setting = fraction_label(fraction);
    entry.metric = multilabel ? "macro AUROC" : "accuracy";
    entry.details["fraction"] = fraction;
    entry.details["train_rows_total"] = train.targets.size();
    entry.details["val_rows"] = val.targets.size();
    entry.details["test_rows"] = test.targets.size();
    entry.details["runs"] = nlohmann::json::array();
    for (int64_t s = 0; s < options.seeds; ++s) {
      const uint64_t seed = options.base_seed + static_cast<uint64_t>(s);
      const auto subset = stratified_fraction(train.targets, fraction, seed);
      const auto rows = torch::tensor(subset.rows, torch::kInt64);
      const Targets sub_targets = select_rows(train.targets, subset.rows);
      const auto fit = train_linear_probe(train.features.index_select(0, rows), sub_targets,
                                          val.features, val.targets, options.probe, seed);
      const Matrix scores = probe_scores(fit.model, test.features);
      nlohmann::json run = {{"seed", seed},
                            {"train_rows", subset.rows.size()},
                            {"requested_rows", subset.requested},
                            {"coverage_rows", subset.coverage_rows},
                            {"epochs", fit.history.val_loss.size()},
                            {"best_epoch", fit.history.best_epoch},
                            {"steps", fit.history.steps},
                            {"stopped_early", fit.history.stopped_early},
                            {"best_val_loss", fit.history.val_loss.at(fit.history.best_epoch)}};
      double value;
      if (multilabel) {
        const auto report = auroc_multilabel(scores, test.targets.multilabel, test.targets.names);
        value = report.macro;
        run["per_label"] = auroc_json(report);
      } else {
        value = accuracy(argmax_rows(scores), test.targets.classes);
      }
      run["value"] = value;
      entry.values.push_back(value);
      entry.seeds.push_back(seed);
      entry.details["runs"].push_back(run);
      log::info("probe {} | {} {} seed {}: {} {:.4f} ({} training rows, best epoch {} of {})",
                method, dataset, entry.setting, seed, entry.metric, value, subset.rows.size(),
                fit.history.best_epoch + 1, fit.history.val_loss.size());
    }
    results.add(std::move(entry));
  }
}

void add_retrieval_results(const std::string& method, const std::string& dataset,
                           const RetrievalReport& report, Results& results) {
  const std::pair<const char*, const RecallReport*> directions[] = {
      {"I→R", &report.image_to_text}, {"R→I", &report.text_to_image}};
  for (const auto& [name, recall] : directions) {
    for (size_t k = 0; k < recall->ks.size(); ++k) {
      ResultEntry entry;
      entry.method = method;
      entry.dataset = dataset;
      entry.setting = fmt::format("{} R@{}", name, recall->ks[k]);
      entry.metric = "recall";
      entry.values = {recall->recall[k]};
      entry.details = {{"chance", recall->chance[k]},
                       {"queries", recall->queries},
                       {"candidates", recall->candidates},
                       {"median_rank", recall->median_rank},
                       {"mean_rank", recall->mean_rank}};
      const std::string setting = entry.setting;
      results.add(std::move(entry));
      add_chance(dataset, setting, "recall", recall->chance[k], results);
    }
  }
}

void add_zero_shot_results(const std::string& method, const std::string& dataset,
                           const ZeroShotReport& report, Results& results) {
  ResultEntry entry;
  entry.method = method;
  entry.dataset = dataset;
  entry.setting = "zero-shot";
  entry.details["chance"] = report.chance;
  entry.details["per_class"] = auroc_json(report.auroc);
  if (report.kind == TaskKind::MultiLabel) {
    entry.metric = "macro AUROC";
    entry.values = {report.auroc.macro};
  } else {
    entry.metric = "accuracy";
    entry.values = {report.accuracy};
    entry.details["majority_class_accuracy"] = report.majority;
    if (!report.auroc.per_label.empty()) entry.details["macro_auroc_one_vs_rest"] = report.auroc.macro;
  }
  const std::string metric = entry.metric;
  results.add(std::move(entry));
  add_chance(dataset, "zero-shot", metric, report.chance, results);
}

}  // namespace mgca::eval
