// Evaluation end to end on real chest X-rays: the test writes image files and
// a CSV from shared/data/cxr-samples, imports them with `mgca prep --format
// csv`, and runs `mgca eval probe | retrieval | zeroshot | extract` on a
// checkpoint folder of the tiny MGCA model (jobs/ci-tiny.toml), on 1 and 2
// ranks, with and without the feature cache, and on an exported encoder.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "eval_e2e_util.h"
#include "mgca/eval/encoder.h"
#include "mgca/io/safetensors.h"
#include "mgca/train/checkpoint.h"
#include "mgca/train/config.h"
#include "support/test_support.h"

namespace mgca::eval {
namespace {

namespace fs = std::filesystem;
using e2e::mean;
using e2e::mgca;
using e2e::quote;
using e2e::read_json;
using e2e::values_of;

// A checkpoint folder as the trainer writes it (config.toml + model.safetensors)
// holding the tiny MGCA model initialised from `seed`.
train::Config write_checkpoint(const fs::path& dir, uint64_t seed) {
  const auto job = mgca::test::source_dir() / "jobs/ci-tiny.toml";
  const auto vocab = mgca::test::shared_data_dir() / "vocab/bert-base-cased-vocab.txt";
  auto config = train::parse_config(mgca::test::read_text_file(job), job.string(),
                                    {"text.vocab=\"" + vocab.string() + "\""});
  auto model = EvalModel::random_init(config, seed);
  fs::create_directories(dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, tensor] : train::module_state(*model.module())) tensors.emplace_back(name, tensor);
  io::save_safetensors(dir / "model.safetensors", tensors, {{"format", "mgca-checkpoint"}});
  mgca::test::write_text_file(dir / "config.toml", train::to_toml(config));
  return config;
}

class RealImages : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new mgca::test::TempDir("mgca-eval-e2e");
    const auto script = mgca::test::source_dir() / "tests/e2e/eval/make_real_csv.py";
    const auto made = mgca::test::run_command(
        mgca::test::python() + " " + quote(script) + " " + quote(mgca::test::shared_data_dir() / "cxr-samples") +
        " " + quote(path("src")) + " 60");
    ASSERT_EQ(made.exit_code, 0) << made.output;
    mgca("prep --format csv --in " + quote(path("src/table.csv")) + " --out " + quote(path("ds")) +
         " --image-size 80");
    write_checkpoint(path("ckpt"), 123);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static fs::path path(const std::string& name) { return dir_->path() / name; }
  static mgca::test::TempDir* dir_;
};
mgca::test::TempDir* RealImages::dir_ = nullptr;

TEST_F(RealImages, PrepWroteThreeLabelledSplits) {
  for (const char* split : {"train", "val", "test"}) {
    ASSERT_TRUE(fs::exists(path("ds") / split / "dataset.json")) << split;
  }
}

TEST_F(RealImages, ProbeRunsEndToEndAndReusesItsCache) {
  const std::string args = "eval probe --checkpoint " + quote(path("ckpt")) + " --data " +
                           quote(path("ds")) + " --fractions 0.5,1 --seeds 2 --cache-dir " +
                           quote(path("cache")) + " --out ";
  const std::string first = mgca(args + quote(path("probe1.json")));
  // The table: the random init of the same architecture beside the checkpoint.
  EXPECT_NE(first.find("| random init (vit_tiny)"), std::string::npos) << first;
  EXPECT_NE(first.find("| " + path("ckpt").string()), std::string::npos) << first;
  EXPECT_NE(first.find("ds 50%"), std::string::npos) << first;
  const auto j1 = read_json(path("probe1.json"));
  EXPECT_NE(j1["command"].get<std::string>().find("eval probe --checkpoint"), std::string::npos);
  EXPECT_EQ(j1["info"]["label_policy"], "multiclass");
  ASSERT_EQ(j1["results"].size(), 4u);  // 2 models × 2 fractions
  for (const auto& e : j1["results"]) {
    EXPECT_EQ(e["metric"], "accuracy");
    ASSERT_EQ(e["values"].size(), 2u);
    for (double v : e["values"].get<std::vector<double>>()) EXPECT_TRUE(v >= 0.0 && v <= 1.0);
  }

  // Second run: every split's features come from the cache, the figures are identical.
  const std::string second = mgca(args + quote(path("probe2.json")));
  EXPECT_NE(second.find("reusing the cache"), std::string::npos) << second;
  const auto j2 = read_json(path("probe2.json"));
  for (size_t i = 0; i < j1["results"].size(); ++i) {
    EXPECT_EQ(j1["results"][i]["values"], j2["results"][i]["values"]) << i;
  }

  // Two ranks without the cache: the same features up to float reassociation,
  // hence the same figures (accuracy on 12 test images moves in steps of 1/12).
  mgca(args + quote(path("probe-np2.json")) + " --no-cache", 2);
  const auto j3 = read_json(path("probe-np2.json"));
  for (size_t i = 0; i < j1["results"].size(); ++i) {
    const auto a = j1["results"][i]["values"].get<std::vector<double>>();
    const auto b = j3["results"][i]["values"].get<std::vector<double>>();
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1.0 / 12.0 + 1e-9) << i;
  }
}

TEST_F(RealImages, ExtractOnTwoRanksEqualsOneRank) {
  const std::string args = "eval extract --checkpoint " + quote(path("ckpt")) + " --split " +
                           quote(path("ds/train")) + " --batch-size 5 --out ";
  mgca(args + quote(path("x1/features.safetensors")));
  mgca(args + quote(path("x2/features.safetensors")), 2);
  const auto a = io::load_safetensors(path("x1/features.safetensors")).at("features");
  const auto b = io::load_safetensors(path("x2/features.safetensors")).at("features");
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_GT(a.size(0), 20);
  EXPECT_EQ(a.size(1), 192);  // ViT-tiny [CLS]
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-4 * (1.0 + a.abs().max().item<double>()));
  // Rows are in dataset order: the features of sample 0 from a one-sample run match row 0.
  const auto meta = io::SafetensorsFile(path("x1/features.safetensors")).metadata();
  EXPECT_EQ(meta.at("key.crop"), "64");
  EXPECT_EQ(meta.at("key.kind"), "image-features");
}

TEST_F(RealImages, RetrievalAndZeroShotStateChance) {
  mgca("eval retrieval --checkpoint " + quote(path("ckpt")) + " --data " + quote(path("ds")) +
       " --cache-dir " + quote(path("cache")) + " --out " + quote(path("retrieval.json")));
  const auto r = read_json(path("retrieval.json"));
  const auto chance = values_of(r, "chance", "I→R R@1");
  ASSERT_EQ(chance.size(), 1u);
  EXPECT_NEAR(chance[0], 1.0 / 12.0, 1e-12);  // 12 test pairs, distinct reports
  EXPECT_EQ(values_of(r, path("ckpt").string(), "R→I R@10").size(), 1u);
  EXPECT_EQ(values_of(r, "random init (vit_tiny)", "I→R R@5").size(), 1u);

  const std::string out = mgca("eval zeroshot --checkpoint " + quote(path("ckpt")) + " --data " +
                               quote(path("ds")) + " --cache-dir " + quote(path("cache")) +
                               " --out " + quote(path("zeroshot.json")));
  EXPECT_NE(out.find("zero-shot"), std::string::npos) << out;
  const auto z = read_json(path("zeroshot.json"));
  EXPECT_NEAR(values_of(z, "chance", "zero-shot").at(0), 0.25, 1e-12);  // 4 classes
  EXPECT_TRUE(z["info"]["prompts"].contains("tbx11k-tb0005"));
}

TEST_F(RealImages, ExportedEncoderProbe) {
  // The exported-encoder contract (encoder.h): the image encoder alone with metadata.
  const auto vocab = mgca::test::shared_data_dir() / "vocab/bert-base-cased-vocab.txt";
  ModelLoadOptions options;
  options.vocab = vocab;
  const auto model = EvalModel::from_checkpoint(path("ckpt"), options);
  save_image_encoder(model, path("encoder.safetensors"));
  const auto meta = io::SafetensorsFile(path("encoder.safetensors")).metadata();
  EXPECT_EQ(meta.at("format"), "mgca-image-encoder");
  EXPECT_EQ(meta.at("image_encoder"), "vit_tiny");
  EXPECT_EQ(meta.at("image_size"), "64");

  mgca("eval probe --encoder " + quote(path("encoder.safetensors")) + " --checkpoint " +
       quote(path("ckpt")) + " --data " + quote(path("ds")) + " --fractions 1 --seeds 1 --cache-dir " +
       quote(path("cache")) + " --out " + quote(path("probe-encoder.json")));
  const auto j = read_json(path("probe-encoder.json"));
  // The encoder is the checkpoint's image encoder: same features, same figure.
  EXPECT_EQ(values_of(j, path("encoder.safetensors").string(), "100%"),
            values_of(j, path("ckpt").string(), "100%"));
  // One random-init row for the one architecture, not one per model.
  int random_rows = 0;
  for (const auto& e : j["results"]) random_rows += e["method"] == "random init (vit_tiny)";
  EXPECT_EQ(random_rows, 1);

  // Bad inputs name the file.
  io::save_safetensors(path("bad.safetensors"), {{"x", torch::zeros({1})}}, {{"format", "other"}});
  const auto bad = mgca::test::run_command(quote(mgca::test::mgca_program()) + " eval probe --encoder " +
                                           quote(path("bad.safetensors")) + " --data " + quote(path("ds")));
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("bad.safetensors: metadata format is 'other'"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace mgca::eval
