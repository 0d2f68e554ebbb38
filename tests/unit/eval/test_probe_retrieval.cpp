// Linear probe, retrieval and zero-shot on constructed embeddings.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "mgca/eval/probe.h"
#include "mgca/eval/protocol.h"
#include "mgca/eval/retrieval.h"
#include "mgca/eval/results.h"
#include "mgca/util/error.h"
#include "support/test_support.h"
#include "support/tensor_checks.h"

namespace mgca::eval {
namespace {

// A multi-label problem that a linear classifier separates with a margin:
// label l is positive when w_l·x > 0.5, with x ~ N(0, I) on 16 dims scaled by 7
// and shifted, so standardization matters.
struct Problem {
  torch::Tensor x;
  Targets targets;
};

Problem separable_multilabel(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, 16});
  auto w = torch::zeros({2, 16});
  w[0][0] = 1.0;
  w[0][1] = -1.0;
  w[0][2] = 0.5;
  w[1][3] = 1.0;
  w[1][4] = 1.0;
  w[1][15] = -0.7;
  auto margin = torch::mm(x, w.t());
  Targets t;
  t.kind = TaskKind::MultiLabel;
  t.names = {"a", "b"};
  t.multilabel = to_matrix((margin > 0.5).to(torch::kFloat32));
  return {x * 7.0 + 3.0, t};
}

TEST(Probe, RecoversASeparableMultiLabelProblem) {
  const auto train = separable_multilabel(600, 1);
  const auto val = separable_multilabel(200, 2);
  const auto test = separable_multilabel(400, 3);
  ProbeOptions options;
  options.learning_rate = 1e-2;
  const auto fit = train_linear_probe(train.x, train.targets, val.x, val.targets, options, 0);
  const auto report = auroc_multilabel(probe_scores(fit.model, test.x), test.targets.multilabel,
                                       test.targets.names);
  EXPECT_GT(report.per_label[0], 0.99);
  EXPECT_GT(report.per_label[1], 0.99);
  EXPECT_LT(fit.history.val_loss[fit.history.best_epoch], 0.15);
}

TEST(Probe, RecoversASeparableMultiClassProblemWithDefaults) {
  // Three classes around well-separated centres; labels as class indices.
  torch::manual_seed(4);
  auto make = [](int64_t n) {
    auto y = torch::randint(0, 3, {n}, torch::kInt64);
    auto centres = torch::tensor({{4.0, 0.0, 0.0, 0.0}, {0.0, 4.0, 0.0, 0.0}, {0.0, 0.0, 4.0, 0.0}});
    auto x = centres.index_select(0, y) + torch::randn({n, 4});
    Targets t;
    t.kind = TaskKind::MultiClass;
    t.names = {"a", "b", "c"};
    t.classes.assign(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + n);
    t.classes[0] = -1;  // a missing label is dropped, not trained on
    return std::make_pair(x, t);
  };
  const auto [xtr, ytr] = make(300);
  const auto [xva, yva] = make(100);
  const auto [xte, yte] = make(500);
  const auto fit = train_linear_probe(xtr, ytr, xva, yva, ProbeOptions{}, 0);
  const double acc = accuracy(argmax_rows(probe_scores(fit.model, xte)), yte.classes);
  EXPECT_GT(acc, 0.95);
}

TEST(Probe, DeterministicGivenTheSeed) {
  const auto train = separable_multilabel(200, 5);
  const auto val = separable_multilabel(100, 6);
  ProbeOptions options;
  options.max_epochs = 5;
  const auto a = train_linear_probe(train.x, train.targets, val.x, val.targets, options, 11);
  const auto b = train_linear_probe(train.x, train.targets, val.x, val.targets, options, 11);
  const auto c = train_linear_probe(train.x, train.targets, val.x, val.targets, options, 12);
  EXPECT_TRUE(torch::equal(a.model.weight, b.model.weight));
  EXPECT_TRUE(torch::equal(a.model.bias, b.model.bias));
  EXPECT_EQ(a.history.val_loss, b.history.val_loss);
  EXPECT_FALSE(torch::equal(a.model.weight, c.model.weight));  // another batch order
}

TEST(Probe, EarlyStoppingKeepsTheBestValidationWeights) {
  // Labels independent of the features: the probe overfits, validation loss
  // rises and training stops `patience` epochs after the best one.
  torch::manual_seed(9);
  auto noise = [](int64_t n) {
    Targets t;
    t.kind = TaskKind::MultiLabel;
    t.names = {"a"};
    t.multilabel = to_matrix(torch::randint(0, 2, {n, 1}).to(torch::kFloat32));
    return std::make_pair(torch::randn({n, 64}), t);
  };
  const auto [xtr, ytr] = noise(40);
  const auto [xva, yva] = noise(200);
  ProbeOptions options;
  options.learning_rate = 1e-2;
  options.patience = 3;
  options.max_epochs = 200;
  const auto fit = train_linear_probe(xtr, ytr, xva, yva, options, 0);
  ASSERT_TRUE(fit.history.stopped_early);
  const auto epochs = static_cast<int64_t>(fit.history.val_loss.size());
  EXPECT_EQ(epochs, fit.history.best_epoch + 1 + options.patience);
  const double best = fit.history.val_loss[fit.history.best_epoch];
  for (double v : fit.history.val_loss) EXPECT_GE(v, best);
  // The returned weights are the best epoch's: recomputing its loss gives it back.
  EXPECT_NEAR(probe_loss(fit.model, xva, yva), best, 1e-6 * std::max(1.0, best));
}

TEST(Probe, MissingLabelsAreMaskedAndBadFeaturesNamed) {
  auto train = separable_multilabel(200, 7);
  const auto val = separable_multilabel(100, 8);
  for (int64_t r = 0; r < 200; r += 3) train.targets.multilabel.at(r, 1) = NAN;
  ProbeOptions options;
  options.max_epochs = 3;
  const auto fit = train_linear_probe(train.x, train.targets, val.x, val.targets, options, 0);
  EXPECT_TRUE(torch::isfinite(fit.model.weight).all().item<bool>());
  EXPECT_TRUE(std::isfinite(fit.history.train_loss.back()));

  auto bad = train.x.clone();
  bad[17][3] = std::numeric_limits<float>::quiet_NaN();
  try {
    train_linear_probe(bad, train.targets, val.x, val.targets, options, 0);
    FAIL() << "NaN features accepted";
  } catch (const mgca::Error& e) {
    EXPECT_NE(std::string(e.what()).find("training features of row 17 are not finite"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(train_linear_probe(train.x.narrow(0, 0, 10), train.targets, val.x, val.targets,
                                  options, 0),
               mgca::Error);
}

TEST(Retrieval, PairedEmbeddingsAndChance) {
  torch::manual_seed(3);
  const int64_t n = 50;
  auto image = torch::randn({n, 32});
  auto text = image * 2.0 + 0.01 * torch::randn({n, 32});  // scale does not matter: cosine
  const auto r = evaluate_retrieval(image, text, {}, {1, 5, 10}, /*block_rows=*/7);
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_DOUBLE_EQ(r.image_to_text.recall[k], 1.0);
    EXPECT_DOUBLE_EQ(r.text_to_image.recall[k], 1.0);
  }
  EXPECT_NEAR(r.image_to_text.chance[0], 1.0 / n, 1e-12);  // K/N
  EXPECT_NEAR(r.image_to_text.chance[2], 10.0 / n, 1e-12);
  // Unrelated embeddings: recall near chance (a loose bound on 50 queries).
  auto unrelated = evaluate_retrieval(image, torch::randn({n, 32}), {}, {10});
  EXPECT_LT(unrelated.image_to_text.recall[0], 0.5);
  EXPECT_THROW(evaluate_retrieval(image, text.narrow(0, 0, 10), {}), mgca::Error);
}

TEST(Retrieval, BlockedMatchesDenseMetric) {
  torch::manual_seed(5);
  auto image = torch::randn({23, 8});
  auto text = image + torch::randn({23, 8});
  const auto groups = group_identical({"a", "b", "a", "c", "d", "e", "f", "g", "h", "i", "j", "k",
                                       "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "b"});
  EXPECT_EQ(groups[0], groups[2]);
  EXPECT_EQ(groups[1], groups[22]);
  EXPECT_NE(groups[0], groups[1]);
  const auto blocked = evaluate_retrieval(image, text, groups, {1, 5}, 4);
  namespace F = torch::nn::functional;
  auto v = F::normalize(image, F::NormalizeFuncOptions().dim(1));
  auto t = F::normalize(text, F::NormalizeFuncOptions().dim(1));
  std::vector<int64_t> target(23);
  for (int64_t i = 0; i < 23; ++i) target[i] = i;
  const auto dense = recall_at_k(to_matrix(torch::mm(v, t.t())), target, groups, {1, 5});
  EXPECT_EQ(blocked.image_to_text.recall, dense.recall);
  EXPECT_EQ(blocked.image_to_text.chance, dense.chance);
  EXPECT_DOUBLE_EQ(blocked.image_to_text.median_rank, dense.median_rank);
}

TEST(ZeroShot, CosineAgainstClassPrompts) {
  // Class c's prompts point along axis c (plus noise); images likewise.
  torch::manual_seed(2);
  auto axes = torch::eye(3).mul(5.0);
  std::vector<torch::Tensor> classes;
  for (int c = 0; c < 3; ++c) {
    classes.push_back(class_embedding(axes[c].unsqueeze(0).repeat({4, 1}) + torch::randn({4, 3})));
  }
  const auto class_emb = torch::stack(classes);
  EXPECT_NEAR(class_emb.norm(2, 1).sub(1.0).abs().max().item<double>(), 0.0, 1e-6);
  auto y = torch::tensor({0, 1, 2, 2, 1, 0, 1}, torch::kInt64);
  auto images = axes.index_select(0, y) + 0.5 * torch::randn({7, 3});
  Targets t;
  t.kind = TaskKind::MultiClass;
  t.names = {"a", "b", "c"};
  t.classes = {0, 1, 2, 2, 1, 0, 1};
  const auto scores = zero_shot_scores(images, class_emb);
  // Cosine by hand for one entry.
  auto vi = images[3] / images[3].norm();
  EXPECT_NEAR(scores.at(3, 1), vi.dot(class_emb[1]).item<double>(), 1e-6);
  const auto report = evaluate_zero_shot(scores, t);
  EXPECT_DOUBLE_EQ(report.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(report.chance, 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(report.majority, 3.0 / 7.0);
  EXPECT_EQ(report.auroc.per_label.size(), 3u);
  EXPECT_DOUBLE_EQ(report.auroc.macro, 1.0);
}

TEST(Results, TableAndJson) {
  Results results("probe");
  results.add({"random init", "synth", "1%", "AUROC", {0.60, 0.62}, {0, 1}});
  results.add({"random init", "synth", "100%", "AUROC", {0.70, 0.70}, {0, 1}});
  results.add({"runs/a/encoder.safetensors", "synth", "1%", "AUROC", {0.85, 0.90}, {0, 1}});
  const std::string table = results.table("Linear probe");
  EXPECT_NE(table.find("| Method"), std::string::npos) << table;
  EXPECT_NE(table.find("synth 1%"), std::string::npos) << table;
  EXPECT_NE(table.find("87.50 ± 3.54"), std::string::npos) << table;
  EXPECT_NE(table.find("61.00 ± 1.41"), std::string::npos) << table;
  EXPECT_NE(table.find("70.00 ± 0.00"), std::string::npos) << table;
  EXPECT_NE(table.find("—"), std::string::npos) << table;  // encoder × 100% missing
  EXPECT_NE(table.find("over 2 seeds"), std::string::npos) << table;

  mgca::test::TempDir dir;
  results.info()["encoder"] = "x";
  results.write_json(dir / "out/results.json", {"mgca", "eval", "probe", "--dataset", "my data"});
  const auto j = nlohmann::json::parse(mgca::test::read_text_file(dir / "out/results.json"));
  EXPECT_EQ(j["command"], "mgca eval probe --dataset 'my data'");
  EXPECT_EQ(j["kind"], "probe");
  EXPECT_EQ(j["info"]["encoder"], "x");
  ASSERT_EQ(j["results"].size(), 3u);
  EXPECT_DOUBLE_EQ(j["results"][2]["mean"].get<double>(), 0.875);
  EXPECT_EQ(j["results"][2]["values"][1].get<double>(), 0.90);
  EXPECT_THROW(results.add({"m", "d", "s", "AUROC", {}, {}}), mgca::Error);
}

// MGCA's detection mAP is -1 when no test image has both a target and a detection. Averaged as -1 it
// would rank a detector that finds nothing below one that scores 0 (seen: "-33.24 ± 57.81").
TEST(Results, SeedWithNothingToScoreCountsAsZeroAndIsMarked) {
  Results results("detect");
  results.add({"random init", "boxes", "10%", "mAP", {0.003, -1.0, 0.0}, {42, 43, 44}});
  results.add({"pretrained", "boxes", "10%", "mAP", {0.05, 0.24, 0.32}, {42, 43, 44}});
  const std::string table = results.table("Detection");
  EXPECT_NE(table.find("| 0.10 ± 0.17 † |"), std::string::npos) << table;
  EXPECT_NE(table.find("| 20.33 ± 13.87 |"), std::string::npos) << table;
  EXPECT_NE(table.find("† a seed had nothing to score"), std::string::npos) << table;
  const auto j = results.to_json({"mgca", "eval", "detect"});
  EXPECT_EQ(j["results"][0]["values"][1].get<double>(), -1.0);  // as the reference reports it
  EXPECT_DOUBLE_EQ(j["results"][0]["mean"].get<double>(), 0.001);
  EXPECT_EQ(j["results"][0]["unscored"].get<int64_t>(), 1);
  EXPECT_EQ(j["results"][1]["unscored"].get<int64_t>(), 0);
  // A table without such a seed has no footnote for it.
  EXPECT_EQ(Results("x").table("t").find("†"), std::string::npos);
}

}  // namespace
}  // namespace mgca::eval

namespace mgca::eval {
namespace {

TEST(Protocol, ProbeGridFractionsAndSeeds) {
  const auto train = separable_multilabel(1000, 21);
  const auto val = separable_multilabel(200, 22);
  const auto test = separable_multilabel(500, 23);
  Results results("probe");
  ProbeGridOptions options;
  options.fractions = {0.01, 0.1, 1.0};
  options.seeds = 2;
  options.base_seed = 5;
  options.probe.max_epochs = 20;
  options.probe.learning_rate = 1e-2;
  run_probe_grid("signal", "toy", {train.x, train.targets}, {val.x, val.targets},
                 {test.x, test.targets}, options, results);
  // The same features with the labels' link to them destroyed: a baseline near 0.5.
  auto shuffled = train.x.index_select(0, torch::randperm(1000));
  run_probe_grid("noise", "toy", {shuffled, train.targets}, {val.x, val.targets},
                 {test.x, test.targets}, options, results);
  ASSERT_EQ(results.entries().size(), 6u);
  const auto& one = results.entries()[0];
  EXPECT_EQ(one.setting, "1%");
  EXPECT_EQ(one.metric, "macro AUROC");
  EXPECT_EQ(one.seeds, (std::vector<uint64_t>{5, 6}));
  EXPECT_EQ(one.details["runs"][0]["requested_rows"], 10);
  EXPECT_GE(one.details["runs"][0]["train_rows"].get<int64_t>(), 10);
  const auto& full = results.entries()[2];
  EXPECT_EQ(full.setting, "100%");
  EXPECT_EQ(full.details["runs"][1]["train_rows"], 1000);
  for (double v : full.values) EXPECT_GT(v, 0.98);
  EXPECT_TRUE(full.details["runs"][0]["per_label"].contains("a"));
  for (double v : results.entries()[5].values) EXPECT_LT(std::abs(v - 0.5), 0.1);
  // 10 % of the data is already enough here; 1 % (10 rows) is weaker than 100 %.
  EXPECT_LT(mean_std(results.entries()[0].values).mean, mean_std(full.values).mean);
  const std::string table = results.table("Linear probe");
  EXPECT_NE(table.find("toy 10%"), std::string::npos) << table;
  EXPECT_EQ(fraction_label(0.005), "0.5%");
}

TEST(Protocol, RetrievalRowsStateChance) {
  torch::manual_seed(1);
  auto image = torch::randn({40, 8});
  Results results("retrieval");
  add_retrieval_results("paired", "toy", evaluate_retrieval(image, image, {}), results);
  add_retrieval_results("unrelated", "toy", evaluate_retrieval(image, torch::randn({40, 8}), {}), results);
  const std::string table = results.table("Retrieval");
  // Rows: paired, unrelated, then chance (K/N = 2.5 %, 12.5 %, 25 %).
  EXPECT_LT(table.find("| paired"), table.find("| unrelated")) << table;
  EXPECT_LT(table.find("| unrelated"), table.find("| chance")) << table;
  EXPECT_NE(table.find("toy I→R R@10"), std::string::npos) << table;
  EXPECT_NE(table.find("12.50"), std::string::npos) << table;
  EXPECT_NE(table.find("25.00"), std::string::npos) << table;
  int chance_rows = 0;
  for (const auto& e : results.entries()) chance_rows += e.method == "chance";
  EXPECT_EQ(chance_rows, 6);  // one per column, not per method
}

}  // namespace
}  // namespace mgca::eval

namespace mgca::eval {
namespace {

// The C++ probe against PyTorch's torch.optim.AdamW and losses, replaying
// the same mini-batches (tests/unit/eval/probe_reference.py).
ProbeHistory compare_with_pytorch(const torch::Tensor& xtr, const Targets& ytr,
                                  const torch::Tensor& xva, const Targets& yva, ProbeOptions options) {
  options.record_batches = true;
  const auto fit = train_linear_probe(xtr, ytr, xva, yva, options, 3);
  auto rows = [](const torch::Tensor& x) {
    nlohmann::json out = nlohmann::json::array();
    auto d = x.to(torch::kFloat64).contiguous();
    for (int64_t r = 0; r < d.size(0); ++r) {
      std::vector<double> row(d[r].data_ptr<double>(), d[r].data_ptr<double>() + d.size(1));
      out.push_back(row);
    }
    return out;
  };
  auto labels = [](const Targets& t) {
    nlohmann::json out = nlohmann::json::array();
    if (t.kind == TaskKind::MultiClass) return nlohmann::json(t.classes);
    for (int64_t r = 0; r < t.multilabel.rows; ++r) {
      nlohmann::json row = nlohmann::json::array();
      for (int64_t c = 0; c < t.multilabel.cols; ++c) {
        const double v = t.multilabel.at(r, c);
        row.push_back(std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v));
      }
      out.push_back(row);
    }
    return out;
  };
  const int64_t n = xtr.size(0);
  const int64_t steps_per_epoch =
      std::max((n + options.batch_size - 1) / options.batch_size, options.min_steps_per_epoch);
  nlohmann::json job = {
      {"kind", ytr.kind == TaskKind::MultiLabel ? "multilabel" : "multiclass"},
      {"classes", ytr.names.size()},
      {"x_train", rows(xtr)},
      {"y_train", labels(ytr)},
      {"x_val", rows(xva)},
      {"y_val", labels(yva)},
      {"options",
       {{"lr", options.learning_rate},
        {"weight_decay", options.weight_decay},
        {"max_epochs", options.max_epochs},
        {"patience", options.patience}}},
      {"batches", fit.history.batches},
      {"steps_per_epoch", steps_per_epoch}};
  mgca::test::TempDir dir;
  mgca::test::write_text_file(dir / "job.json", job.dump());
  const auto script = mgca::test::source_dir() / "tests/unit/eval/probe_reference.py";
  const auto run = mgca::test::run_command(mgca::test::python() + " " + script.string() + " " +
                                           (dir / "job.json").string() + " " +
                                           (dir / "out.json").string());
  EXPECT_EQ(run.exit_code, 0) << run.output;
  if (run.exit_code != 0) return fit.history;
  const auto ref = nlohmann::json::parse(mgca::test::read_text_file(dir / "out.json"));
  EXPECT_EQ(ref["best_epoch"].get<int64_t>(), fit.history.best_epoch);
  const auto val_ref = ref["val_loss"].get<std::vector<double>>();
  EXPECT_EQ(val_ref.size(), fit.history.val_loss.size());
  if (val_ref.size() != fit.history.val_loss.size()) return fit.history;
  for (size_t e = 0; e < val_ref.size(); ++e) {
    EXPECT_NEAR(fit.history.val_loss[e], val_ref[e], 1e-5 * std::max(1.0, val_ref[e])) << "epoch " << e;
  }
  std::vector<float> w_flat;
  for (const auto& row : ref["weight"]) {
    for (const auto& v : row) w_flat.push_back(v.get<float>());
  }
  const auto w_ref = torch::tensor(w_flat).reshape(fit.model.weight.sizes());
  const auto b_ref = torch::tensor(ref["bias"].get<std::vector<float>>());
  // float32 on both sides; the reassociation differences stay far below this.
  EXPECT_TRUE(mgca::test::AllClose(fit.model.weight, w_ref, 1e-4, 1e-5));
  EXPECT_TRUE(mgca::test::AllClose(fit.model.bias, b_ref, 1e-4, 1e-5));
  return fit.history;
}

TEST(Probe, MatchesPyTorchAdamWMultiLabel) {
  auto train = separable_multilabel(70, 31);
  const auto val = separable_multilabel(40, 32);
  train.targets.multilabel.at(3, 0) = NAN;  // masked entries
  train.targets.multilabel.at(9, 1) = NAN;
  ProbeOptions options;
  options.learning_rate = 3e-3;
  options.batch_size = 16;
  options.max_epochs = 6;
  options.min_steps_per_epoch = 7;  // the permutation wraps within an epoch
  compare_with_pytorch(train.x, train.targets, val.x, val.targets, options);
}

TEST(Probe, MatchesPyTorchAdamWMultiClassWithEarlyStopping) {
  torch::manual_seed(12);
  auto make = [](int64_t n) {
    Targets t;
    t.kind = TaskKind::MultiClass;
    t.names = {"a", "b", "c"};
    auto y = torch::randint(0, 3, {n}, torch::kInt64);
    t.classes.assign(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + n);
    return std::make_pair(torch::randn({n, 6}) * 3.0, t);  // noise labels: early stopping
  };
  const auto [xtr, ytr] = make(30);
  const auto [xva, yva] = make(50);
  ProbeOptions options;
  options.learning_rate = 5e-2;
  options.batch_size = 8;
  options.max_epochs = 40;
  options.patience = 3;
  const auto history = compare_with_pytorch(xtr, ytr, xva, yva, options);
  EXPECT_TRUE(history.stopped_early);
  EXPECT_LT(history.val_loss.size(), 40u);
}

}  // namespace
}  // namespace mgca::eval
