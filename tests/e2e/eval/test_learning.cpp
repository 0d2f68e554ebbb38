// Pretraining measurably helps: a tiny MGCA model pretrained with `mgca
// train` on `mgca synth` data beats its random initialisation in the linear
// probe, and its image→report retrieval R@10 is far above chance.
//
// Needs `mgca train` (the trainer's MGCA task) and `mgca export`; until they
// are part of the program the test is skipped with that reason.
#include <gtest/gtest.h>

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

bool has_command(const std::string& name) {
  const auto help = mgca::test::run_command(quote(mgca::test::mgca_program()) + " --help");
  return help.output.find("\n  " + name + " ") != std::string::npos;
}

TEST(Learning, PretrainedTinyModelBeatsRandomInitAndRetrievesFarAboveChance) {
  if (!has_command("train") || !has_command("export")) {
    GTEST_SKIP() << "`mgca train` / `mgca export` are not in this build yet";
  }
  mgca::test::TempDir dir("mgca-eval-learning");
  const auto data = dir.path() / "synth";
  for (auto [split, num] : std::vector<std::pair<std::string, int>>{{"train", 3000}, {"val", 400}, {"test", 600}}) {
    mgca("synth --out " + quote(data / split) + " --split " + split + " --num " + std::to_string(num) +
         " --image-size 72 --seed 3");
  }
  const auto vocab = mgca::test::shared_data_dir() / "vocab/bert-base-cased-vocab.txt";
  mgca("train " + quote(mgca::test::source_dir() / "jobs/ci-tiny.toml") +
           " --set data.train=\"" + (data / "train").string() + "\"" +
           " --set output_dir=\"" + (dir.path() / "runs").string() + "\"" +
           " --set text.vocab=\"" + vocab.string() + "\"" +
           " --set data.batch_size=32 --set schedule.max_steps=400 --set schedule.epochs=10" +
           " --set checkpoint.every_steps=0",
       2);
  const auto run = dir.path() / "runs/ci-tiny";
  mgca("export " + quote(run) + " --out " + quote(dir.path() / "encoder.safetensors"));

  mgca("eval probe --encoder " + quote(dir.path() / "encoder.safetensors") + " --data " + quote(data) +
       " --fractions 0.01,0.1,1 --seeds 3 --cache-dir " + quote(dir.path() / "cache") + " --out " +
       quote(dir.path() / "probe.json"));
  const auto probe = read_json(dir.path() / "probe.json");
  const std::string trained = (dir.path() / "encoder.safetensors").string();
  for (const char* fraction : {"1%", "10%", "100%"}) {
    const double pretrained = mean(values_of(probe, trained, fraction));
    const double random = mean(values_of(probe, "random init (vit_tiny)", fraction));
    EXPECT_GT(pretrained, random + 0.02) << fraction << ": pretrained " << pretrained << ", random " << random;
  }

  // Retrieval of the newest checkpoint: R@10 far above chance (≥ 3×).
  mgca("eval retrieval --checkpoint " + quote(run / "checkpoints") + " --data " + quote(data) +
       " --cache-dir " + quote(dir.path() / "cache") + " --out " + quote(dir.path() / "retrieval.json"));
  const auto retrieval = read_json(dir.path() / "retrieval.json");
  const double chance = values_of(retrieval, "chance", "I→R R@10").at(0);
  double r10 = 0.0;
  for (const auto& e : retrieval["results"]) {
    if (e["setting"] == "I→R R@10" && e["method"] != "chance" &&
        e["method"].get<std::string>().rfind("random init", 0) != 0) {
      r10 = e["values"][0].get<double>();
    }
  }
  EXPECT_GT(r10, 3.0 * chance) << "R@10 " << r10 << ", chance " << chance;
}

}  // namespace
}  // namespace mgca::eval
