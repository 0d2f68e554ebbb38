// The PyTorch baseline of bench/step (bench/reference/) must compute the
// official MGCA step, and its FLOP count must be right: otherwise the
// benchmark ratio and MFU compare different work. These tests run the
// Python checks with the venv's Python (torch 2.11).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "support/test_support.h"

namespace {
using mgca::test::run_command;
using mgca::test::shared_data_dir;
using mgca::test::source_dir;

std::string python() { return mgca::test::python(); }

TEST(ReferenceStep, LossesAndGradientsEqualTheOfficialGoldenVectors) {
  const auto script = source_dir() / "tests/unit/bench/reference_golden.py";
  const auto r = run_command(python() + " " + script.string() + " " + (shared_data_dir() / "golden").string() + " " +
                             source_dir().string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("all checks passed"), std::string::npos) << r.output;
}

TEST(ReferenceStep, AnalyticFlopsEqualTheProfilerCount) {
  const auto script = source_dir() / "tests/unit/bench/reference_flops.py";
  for (const std::string args : {"jobs/ci-tiny.toml 4", "jobs/mgca-vit-b16.toml 2"}) {
    const auto r = run_command(python() + " " + script.string() + " " + source_dir().string() + " " + args);
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output;
  }
}

TEST(ReferenceStep, BenchmarkRunsAndReportsTheTimeSplit) {
  mgca::test::TempDir dir;
  const auto out = dir / "ref.json";
  const auto r = run_command("cd " + source_dir().string() + " && " + python() +
                             " bench/reference/mgca_step.py --job jobs/ci-tiny.toml --steps 2 --warmup 1 --json " +
                             out.string() + " > /dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(mgca::test::read_text_file(out));
  EXPECT_EQ(j.at("batch").get<int>(), 4);
  EXPECT_EQ(j.at("steps").size(), 3u);
  for (const char* part : {"data", "forward", "backward", "optimizer", "total"}) {
    EXPECT_GT(j.at("median_s").at(part).get<double>(), 0.0) << part;
  }
  const double split = j["median_s"]["data"].get<double>() + j["median_s"]["forward"].get<double>() +
                       j["median_s"]["backward"].get<double>() + j["median_s"]["optimizer"].get<double>();
  EXPECT_LE(split, j["median_s"]["total"].get<double>() * 1.5);
  EXPECT_GT(j.at("samples_per_s").get<double>(), 0.0);
  EXPECT_GT(j.at("peak_rss_mb").get<double>(), 50.0);
  EXPECT_GT(j.at("flops_per_step").get<double>(), 3.0 * 1e9);  // 4 samples × ~0.83 GFLOP (fwd+bwd)
  for (const auto& step : j.at("steps")) {
    EXPECT_TRUE(std::isfinite(step.at("loss").get<double>()));
  }
  // bad input: an unknown backbone is named
  const auto bad = run_command("cd " + source_dir().string() + " && " + python() +
                               " bench/reference/mgca_step.py --job jobs/ci-tiny.toml --set model.image_encoder=resnet50"
                               " --steps 1 --warmup 0 2>&1");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("resnet50"), std::string::npos) << bad.output;
}

}  // namespace

namespace {

// One step of ours and of the reference from the same weights and inputs
// must give the same losses and gradient norm (fp32, dropout 0): otherwise
// bench/step would compare different work. Two steps over a pool of one
// batch: step 1 in epoch 0 (prototype gradient dropped), step 2 in epoch 1
// after one AdamW update (checks the optimizer and the unfrozen prototypes).
TEST(ReferenceStep, ComputesTheSameStepAsOurs) {
  const char* env = std::getenv("MGCA_BENCH_STEP");
  if (env == nullptr) GTEST_SKIP() << "bench_step is not built (MGCA_BUILD_BENCH=OFF)";
  const std::filesystem::path bench_step = env;
  ASSERT_TRUE(std::filesystem::exists(bench_step)) << bench_step;
  mgca::test::TempDir dir;
  const std::string sets = " --set schedule.name=\\\"constant\\\" --set optimizer.lr=1e-3";
  const std::string cd = "cd " + source_dir().string() + " && ";
  auto r = run_command(cd + python() + " bench/reference/mgca_step.py --job jobs/ci-tiny.toml --pool 1 " +
                       "--write-inputs " + (dir / "inputs.safetensors").string() + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(cd + bench_step.string() + " --job jobs/ci-tiny.toml --threads 1 --warmup 0 --steps 2 --inputs " +
                  (dir / "inputs.safetensors").string() + " --dump " + (dir / "dump").string() + sets + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string check = cd + python() + " bench/reference/mgca_step.py --job jobs/ci-tiny.toml --threads 1 --check " +
                            (dir / "dump").string() + sets;
  r = run_command(check + " 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK: 10 values compared, 0 outside tolerance"), std::string::npos) << r.output;
  // The check must see a different computation: the reference with λ_CTA = 0.9.
  r = run_command(check + " --set objectives.lambda_cta=0.9 2>&1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("MISMATCH"), std::string::npos) << r.output;
}

}  // namespace
