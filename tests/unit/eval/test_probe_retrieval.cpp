// Linear probe, retrieval and zero-shot on constructed embeddings.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "mgca/eval/probe.h"
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

}  // namespace
}  // namespace mgca::eval
