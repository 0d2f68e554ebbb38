// Pretraining measurably helps: a tiny MGCA model pretrained with `mgca
// train` on `mgca synth` data beats its random initialisation in the linear
// probe, and its image→report retrieval R@10 is far above chance.
//
// Needs `mgca train` (the trainer's MGCA task) and `mgca export`; until they
// are part of the program the test is skipped with that reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <iostream>
#include <iterator>

#include "eval_e2e_util.h"
#include "support/test_support.h"

namespace mgca::eval {
namespace {

namespace fs = std::filesystem;
using e2e::mean;
using e2e::mgca;
using e2e::quote;
using e2e::read_json;
using e2e::values_of;

// What the test demands (measured figures in docs/evaluation.md). The
// recipe's 200 steps end in a different encoder on each CPU family (MKL
// takes other kernels, so other roundings): with libtorch 2.11 it measured a
// probe margin of 0.054 and R@10 2.3x chance on an Intel Xeon, 0.023 (per
// seed +0.019, +0.033, +0.019) and 2.0x on an AMD EPYC (libtorch 1.13: 0.098
// and 3.5x). So the probe must win on every one of the 3 seeds (each seed
// draws the same training rows for both encoders) and by a mean margin above
// kProbeMargin; R@10 must beat chance (10 +- 3 hits of 300) by 2 sigma.
constexpr double kProbeMargin = 0.01;  // macro AUROC, pretrained over random init
constexpr double kR10OverChance = 1.6;

bool has_command(const std::string& name) {
  const auto help = mgca::test::run_command(quote(mgca::test::mgca_program()) + " --help");
  return help.output.find("\n  " + name + " ") != std::string::npos;
}

// The demo's data (`mgca synth` 1000/200/300 pairs, 72 px, seed 3) in
// dir/synth, the demo's job (jobs/cpu-demo.toml: 2 ranks × 16 pairs for 200
// steps, no augmentation, lr 1.5e-3) run on it with `overrides` (extra
// `--set`s), and its image encoder exported to dir/encoder.safetensors.
// Returns the run folder.
fs::path pretrain_demo(const fs::path& dir, const std::string& overrides) {
  const auto data = dir / "synth";
  for (auto [split, num] : std::vector<std::pair<std::string, int>>{{"train", 1000}, {"val", 200}, {"test", 300}}) {
    mgca("synth --out " + quote(data / split) + " --split " + split + " --num " + std::to_string(num) +
         " --image-size 72 --seed 3");
  }
  const auto vocab = mgca::test::shared_data_dir() / "vocab/bert-base-cased-vocab.txt";
  mgca("train " + quote(mgca::test::source_dir() / "jobs/cpu-demo.toml") + " --set data.train=\"" +
           (data / "train").string() + "\"" + " --set output_dir=\"" + (dir / "runs").string() + "\"" +
           " --set text.vocab=\"" + vocab.string() + "\" --set checkpoint.every_steps=0" + overrides,
       2);
  const auto run = dir / "runs/cpu-demo";
  mgca("export " + quote(run) + " --out " + quote(dir / "encoder.safetensors"));
  return run;
}

TEST(Learning, PretrainedTinyModelBeatsRandomInitAndRetrievesFarAboveChance) {
  if (!has_command("train") || !has_command("export")) {
    GTEST_SKIP() << "`mgca train` / `mgca export` are not in this build yet";
  }
  // The demo's own job (jobs/cpu-demo.toml: 1000 training pairs, 2 ranks ×
  // 16 pairs for 200 steps, no augmentation, lr 1.5e-3) on the demo's data,
  // so this test is the demo's learning claim; a few CPU minutes.
  mgca::test::TempDir dir("mgca-eval-learning");
  const auto data = dir.path() / "synth";
  const auto run = pretrain_demo(dir.path(), "");

  // Linear probe at 10 % of the training labels (100 images), 3 seeds:
  // macro AUROC over the synthetic findings, pretrained vs random init.
  const auto probe_out = mgca("eval probe --encoder " + quote(dir.path() / "encoder.safetensors") + " --data " +
                              quote(data) + " --fractions 0.1 --seeds 3 --cache-dir " + quote(dir.path() / "cache") +
                              " --out " + quote(dir.path() / "probe.json"));
  const auto probe = read_json(dir.path() / "probe.json");
  const std::string trained = (dir.path() / "encoder.safetensors").string();
  const auto pretrained = values_of(probe, trained, "10%");
  const auto random = values_of(probe, "random init (vit_tiny)", "10%");
  ASSERT_EQ(pretrained.size(), 3u);
  ASSERT_EQ(random.size(), 3u);
  EXPECT_GT(mean(pretrained), mean(random) + kProbeMargin) << probe_out;
  for (size_t seed = 0; seed < pretrained.size(); ++seed) {
    EXPECT_GT(pretrained[seed], random[seed]) << "seed " << seed << "\n" << probe_out;
  }
  std::cout << "probe macro AUROC at 10 %: pretrained " << mean(pretrained) << ", random init " << mean(random)
            << " (margin " << mean(pretrained) - mean(random) << ")\n";

  // Image→report retrieval over the 300 test pairs with the newest
  // checkpoint: chance R@10 = 10/300; the table states it.
  const auto retrieval_out = mgca("eval retrieval --checkpoint " + quote(run / "checkpoints") + " --data " +
                                  quote(data) + " --cache-dir " + quote(dir.path() / "cache") + " --out " +
                                  quote(dir.path() / "retrieval.json"));
  const auto retrieval = read_json(dir.path() / "retrieval.json");
  const double chance = values_of(retrieval, "chance", "I→R R@10").at(0);
  EXPECT_NEAR(chance, 10.0 / 300.0, 1e-9);
  EXPECT_NE(retrieval_out.find("chance"), std::string::npos) << retrieval_out;
  double r10 = -1.0;
  for (const auto& e : retrieval["results"]) {
    if (e["setting"] == "I→R R@10" && e["method"] != "chance" &&
        e["method"].get<std::string>().rfind("random init", 0) != 0) {
      r10 = e["values"][0].get<double>();
    }
  }
  EXPECT_GT(r10, kR10OverChance * chance) << retrieval_out;
  std::cout << "I→R R@10 " << r10 << ", chance " << chance << " (" << r10 / chance << "×)\n";
}

// The segmentation and detection protocols are MGCA's on a frozen ResNet (U-Net
// on the stem and layer1-4, YOLOv3 on layer2-4), so the demo's recipe is run
// with the tiny ResNet (no internal resize: 64 px in). A frozen random ResNet
// is a weak extractor (deep random convolutions, BatchNorm statistics at their
// initial values); pretraining gives it features the heads can use. With the
// demo's ViT this does not hold: its random patch tokens carry the lesions as
// well as the pretrained ones (docs/evaluation.md).
//
// Measured (docs/evaluation.md, 3 seeds, 10 % labels, 10 epochs): Dice 34.1 ±
// 2.6 % pretrained vs 19.6 ± 2.2 % random init, every pretrained seed above
// every random one; mAP 20.6 % (4.97 / 24.3 / 32.4) vs at most 0.27 %.
constexpr double kDiceMargin = 0.05;  // mean Dice, pretrained over random init
constexpr double kMapMargin = 0.01;   // mean mAP, pretrained over random init

// mAP is -1 when a head predicted no box on any image with a lesion (MGCA's
// convention); as a score that is 0.
std::vector<double> map_scores(std::vector<double> values) {
  for (auto& v : values) v = std::max(v, 0.0);
  return values;
}

TEST(Learning, PretrainedResNetBeatsRandomInitOnDiceAndMapAtTenPercentLabels) {
  if (!has_command("train") || !has_command("export")) {
    GTEST_SKIP() << "`mgca train` / `mgca export` are not in this build yet";
  }
  mgca::test::TempDir dir("mgca-eval-learning-resnet");
  pretrain_demo(dir.path(), " --set model.image_encoder=\"resnet50_tiny\" --set model.resnet_input_size=0");
  const auto encoder = dir.path() / "encoder.safetensors";
  const std::string heads = " --data " + quote(dir.path() / "synth") +
                            " --fractions 0.1 --seeds 3 --epochs 10 --patience 10 --threads 1 --input-size 64";
  const struct {
    const char* command;
    double margin;
    bool map;
  } protocols[] = {{"segment", kDiceMargin, false}, {"detect", kMapMargin, true}};
  // The two protocols run side by side (one thread each): half the wall time
  // on a 2-core machine, the same figures.
  const auto json = [&](const char* command) { return dir.path() / (std::string(command) + ".json"); };
  std::vector<std::future<std::string>> outputs;
  for (const auto& p : protocols) {
    outputs.push_back(std::async(std::launch::async, [&, command = p.command] {
      return mgca("eval " + std::string(command) + " --encoder " + quote(encoder) + heads + " --out " +
                  quote(json(command)));
    }));
  }
  for (size_t i = 0; i < std::size(protocols); ++i) {
    const auto& p = protocols[i];
    const auto out = outputs[i].get();
    const auto results = read_json(json(p.command));
    auto pretrained = values_of(results, encoder.string(), "10%");
    auto random = values_of(results, "random init (resnet50_tiny)", "10%");
    if (p.map) {
      pretrained = map_scores(pretrained);
      random = map_scores(random);
    }
    ASSERT_EQ(pretrained.size(), 3u) << out;
    ASSERT_EQ(random.size(), 3u) << out;
    EXPECT_GT(mean(pretrained), mean(random) + p.margin) << p.command << "\n" << out;
    for (size_t seed = 0; seed < pretrained.size(); ++seed) {
      EXPECT_GT(pretrained[seed], random[seed]) << p.command << " seed " << seed << "\n" << out;
    }
    std::cout << p.command << " at 10 %: pretrained " << mean(pretrained) << ", random init " << mean(random) << "\n";
  }
}

}  // namespace
}  // namespace mgca::eval
