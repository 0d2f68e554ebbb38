// `mgca train` end to end under mpirun, on a small synthetic dataset with
// the CI-tiny MGCA job (tiny ViT + 2-layer BERT on CPU):
//  - bad job files give one clear error before any training starts;
//  - K steps equal K/2 steps + stop + resume for K/2 (losses and the bytes of
//    the final weights and optimizer state);
//  - 2 ranks × b equal 1 rank × 2b for 20 steps (losses per step and final
//    weights to 1e-5 relative, SyncBatchNorm on);
//  - a run stopped on 2 ranks, resumed on 1 rank (b doubled), then on 4
//    (b halved), ends as the uninterrupted 2-rank run;
//  - SIGUSR1 to one rank: every rank checkpoints at the same step and exits
//    75; the resumed run ends where the uninterrupted one does, bit for bit;
//  - SIGKILL of one rank ends the job within the watchdog timeout with a
//    message, and the newest complete checkpoint still loads and resumes;
//  - SIGKILL at random moments of (background) checkpoint writes, 20 times:
//    the newest complete checkpoint always loads, `resume = auto` picks it,
//    and the run still ends bit-identical to an uninterrupted one;
//  - the TensorBoard files, read back by the real `tensorboard` package,
//    hold the tags, steps and values of metrics.jsonl, also after a resume
//    that rewrites steps;
//  - one of two ranks slowed on purpose (MGCA_TEST_SLOW_RANK): the straggler
//    warning names it and its host, and ranks_data_slowest says it.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <torch/torch.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "mgca/build_config.h"
#include "mgca/io/dataset_file.h"
#include "mgca/train/checkpoint.h"
#include "process.h"
#include "support/tensor_checks.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace mgca::test {
namespace {

class TrainE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("mgca-e2e-train");
    // 96 samples at 72 px (random 64 px crops for the tiny ViT).
    const auto r = run_command(mgca_program().string() + " synth --out " + quote((*dir_ / "synth").string()) +
                               " --num 96 --image-size 72 --seed 3");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static fs::path dataset() { return *dir_ / "synth"; }
  static fs::path runs() { return *dir_ / "runs"; }
  static fs::path run_dir(const std::string& name) { return runs() / name; }

  // mpirun -np N mgca train jobs/ci-tiny.toml --set … (paths into the temporary folder).
  static std::string train_command(int np, const std::string& name, const std::vector<std::string>& extra = {},
                                   const std::string& job = "") {
    std::string command = std::string(MGCA_MPIEXEC) + " --allow-run-as-root --oversubscribe --bind-to none -np " +
                          std::to_string(np) + " " + mgca_program().string() + " train " +
                          quote(job.empty() ? (source_dir() / "jobs" / "ci-tiny.toml").string() : job);
    std::vector<std::string> sets = {"data.train=" + dataset().string(),
                                     "text.vocab=" + (shared_data_dir() / "vocab" / "bert-base-cased-vocab.txt").string(),
                                     "output_dir=" + runs().string(), "name=" + name, "runtime.threads=1",
                                     "logging.progress_interval_s=1000"};
    sets.insert(sets.end(), extra.begin(), extra.end());
    for (const auto& s : sets) command += " --set " + quote(s);
    return command;
  }

  static std::vector<nlohmann::json> metrics(const std::string& name) {
    std::vector<nlohmann::json> rows;
    std::ifstream in(run_dir(name) / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
    }
    return rows;
  }

  static fs::path final_checkpoint(const std::string& name) {
    auto newest = train::newest_checkpoint(run_dir(name) / "checkpoints");
    EXPECT_TRUE(newest.has_value()) << "no checkpoint in " << run_dir(name);
    return newest ? newest->path : fs::path();
  }

  static TempDir* dir_;
};

TempDir* TrainE2E::dir_ = nullptr;

int count_lines_containing(const std::string& text, const std::string& needle) {
  int count = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) count += line.find(needle) != std::string::npos ? 1 : 0;
  return count;
}

// ---- bad job files: one clear error before any training --------------------

void expect_rejected(const CommandResult& r, const fs::path& run, const std::string& expected) {
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count_lines_containing(r.output, "bad job:"), 1) << r.output;  // once, not once per rank
  EXPECT_NE(r.output.find(expected), std::string::npos) << "expected '" << expected << "' in:\n" << r.output;
  EXPECT_FALSE(fs::exists(run / "metrics.jsonl")) << "training started: " << r.output;
}

TEST_F(TrainE2E, BadJobFilesGiveOneClearErrorBeforeTraining) {
  const fs::path jobs = *dir_ / "bad-jobs";
  fs::create_directories(jobs);
  write_text_file(jobs / "unknown.toml", "[optimizer]\nlearning_rate = 1e-4\n");
  auto r = run_command(train_command(2, "bad-unknown", {}, (jobs / "unknown.toml").string()));
  expect_rejected(r, run_dir("bad-unknown"),
                  "unknown key 'learning_rate' in table [optimizer]; valid keys of [optimizer]: name, lr,");

  write_text_file(jobs / "type.toml", "[schedule]\nepochs = \"three\"\n");
  r = run_command(train_command(2, "bad-type", {}, (jobs / "type.toml").string()));
  expect_rejected(r, run_dir("bad-type"), "key 'schedule.epochs': expected an integer, found a string");

  r = run_command(train_command(2, "bad-dataset", {"data.train=" + (*dir_ / "no-such-set").string()}));
  expect_rejected(r, run_dir("bad-dataset"), "data.train: dataset folder '" + (*dir_ / "no-such-set").string() +
                                                 "' does not exist");

  // A classification set: images and labels, no reports.
  const fs::path labels_only = *dir_ / "labels-only";
  fs::create_directories(labels_only);
  io::ShardedWriter writer(labels_only, "part", 72, {"Effusion"}, 100);
  const std::vector<uint8_t> image(72 * 72, 80);
  const float label = 1.0f;
  for (int i = 0; i < 16; ++i) writer.append("x" + std::to_string(i), "", image.data(), &label);
  io::DatasetManifest manifest;
  manifest.source = "chexpert";
  manifest.split = "train";
  manifest.image_size = 72;
  manifest.label_names = {"Effusion"};
  manifest.shards = writer.finish();
  io::write_manifest(labels_only, manifest);
  r = run_command(train_command(2, "bad-reports", {"data.train=" + labels_only.string()}));
  expect_rejected(r, run_dir("bad-reports"), "has no reports: pretraining needs image-report pairs");
}

// ---- bit-exact resume ---------------------------------------------------------

TEST_F(TrainE2E, StopAndResumeIsBitIdentical) {
  const int k = 8;
  auto r = run_command(train_command(2, "straight", {"schedule.max_steps=" + std::to_string(k)}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(train_command(2, "halves", {"schedule.max_steps=" + std::to_string(k),
                                              "schedule.stop_after_steps=" + std::to_string(k / 2)}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(final_checkpoint("halves").filename(), train::checkpoint_name(k / 2));
  r = run_command(train_command(2, "halves", {"schedule.max_steps=" + std::to_string(k)}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;

  const fs::path a = final_checkpoint("straight"), b = final_checkpoint("halves");
  ASSERT_EQ(a.filename(), train::checkpoint_name(k));
  ASSERT_EQ(b.filename(), train::checkpoint_name(k));
  EXPECT_TRUE(read_text_file(a / "model.safetensors") == read_text_file(b / "model.safetensors"))
      << "final weights differ";
  EXPECT_TRUE(read_text_file(a / "optimizer.safetensors") == read_text_file(b / "optimizer.safetensors"))
      << "optimizer state differs";
  const auto ma = metrics("straight"), mb = metrics("halves");
  ASSERT_EQ(ma.size(), static_cast<size_t>(k));
  ASSERT_EQ(mb.size(), static_cast<size_t>(k));
  for (size_t i = 0; i < ma.size(); ++i) {
    for (const auto& [key, value] : ma[i].items()) {
      if (key.rfind("loss", 0) == 0 || key == "lr" || key == "grad_norm") {
        EXPECT_EQ(value, mb[i][key]) << "step " << i + 1 << " " << key;
      }
    }
  }
}

// ---- the distributed contract at trainer level --------------------------------------

// In float64 (runtime.dtype) so that what is compared is the contract itself,
// not float32 rounding: in float32 the two runs differ from step 1 by ~1e-5
// (torch's single-process BatchNorm and SyncBatchNorm round differently, and
// 1/sqrt(var + eps) magnifies that on low-variance channels of 8-row
// batches), and Adam turns rounding noise in near-zero gradients (the biases
// right before a BatchNorm have an exactly zero gradient) into lr-sized
// steps. In float64 every loss agrees to ~1e-14 and every weight to ~1e-8.
TEST_F(TrainE2E, TwoRanksEqualOneRankWithTheGlobalBatch) {
  const std::vector<std::string> common = {"schedule.max_steps=20", "model.batchnorm=sync", "checkpoint.every_steps=0",
                                           "optimizer.lr=2e-5", "schedule.min_lr=1e-8", "runtime.dtype=float64"};
  auto two = common, one = common;
  two.push_back("data.batch_size=4");
  one.push_back("data.batch_size=8");
  auto r = run_command(train_command(2, "two-ranks", two));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(train_command(1, "one-rank", one));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const auto m2 = metrics("two-ranks"), m1 = metrics("one-rank");
  ASSERT_EQ(m2.size(), 20u);
  ASSERT_EQ(m1.size(), 20u);
  int compared_losses = 0;
  for (size_t i = 0; i < m1.size(); ++i) {
    for (const auto& [key, value] : m1[i].items()) {
      if (key.rfind("loss", 0) != 0) continue;
      const double x = m2[i][key].get<double>(), y = value.get<double>();
      EXPECT_LE(std::abs(x - y), 1e-10 * std::abs(y)) << "step " << i + 1 << " " << key << ": " << x << " vs " << y;
      ++compared_losses;
    }
  }
  EXPECT_EQ(compared_losses, 20 * 10);  // total + 9 parts per step
  const auto w2 = train::load_model_tensors(final_checkpoint("two-ranks"));
  const auto w1 = train::load_model_tensors(final_checkpoint("one-rank"));
  ASSERT_EQ(w1.size(), w2.size());
  for (const auto& [name, tensor] : w1) {
    EXPECT_TRUE(AllClose(w2.at(name), tensor, 1e-5, 1e-9)) << name;
  }
  // And the weights did move: the comparison is not of two untouched initialisations.
  EXPECT_NE(m1.front()["loss"].get<double>(), m1.back()["loss"].get<double>());
  // The 20 steps cross the end of the prototypes' frozen epoch (12 steps of 8 of
  // the 96 samples per epoch): the contract holds with and without their gradient.
  EXPECT_EQ(m2.front()["epoch"].get<int>(), 0);
  EXPECT_EQ(m2.back()["epoch"].get<int>(), 1);
  // The per-rank spread is logged at W = 1 too: of rank 0's own times.
  for (const auto& row : m1) {
    for (const char* what : {"step", "data", "comm"}) {
      const std::string prefix = std::string("ranks_") + what;
      const double own = row.at(std::string("time_") + what + "_s").get<double>();
      EXPECT_EQ(row.at(prefix + "_s_min").get<double>(), own) << row.dump();
      EXPECT_EQ(row.at(prefix + "_s_median").get<double>(), own) << row.dump();
      EXPECT_EQ(row.at(prefix + "_s_max").get<double>(), own) << row.dump();
      EXPECT_EQ(row.at(prefix + "_slowest").get<int>(), 0) << row.dump();
    }
  }
}

// ---- observability: TensorBoard, per-rank timing ---------------------------------

// Interrupted after step 6 with its newest checkpoint at step 2 (the later
// ones removed): the resumed run rewrites steps 3..6. TensorBoard must show
// each step once, with the resumed run's values (its times differ).
TEST_F(TrainE2E, TensorboardFilesHoldTheMetricsAlsoAfterAResume) {
  const std::vector<std::string> sets = {"schedule.max_steps=6", "checkpoint.every_steps=2", "checkpoint.keep=5"};
  auto r = run_command(train_command(2, "tboard", sets));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto first = metrics("tboard");
  ASSERT_EQ(first.size(), 6u);
  for (int step : {4, 6}) fs::remove_all(run_dir("tboard") / "checkpoints" / train::checkpoint_name(step));
  r = run_command(train_command(2, "tboard", sets));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_NE(r.output.find("at step 2 of 6"), std::string::npos) << r.output;
  const auto rows = metrics("tboard");
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_NE(rows[5]["time_step_s"], first[5]["time_step_s"]) << "the rewritten steps must be told apart";

  const auto script = source_dir() / "tests" / "support" / "read_tensorboard.py";
  const fs::path out = *dir_ / "tboard-read.json";
  const auto read = run_command(python() + " " + quote(script) + " " + quote(run_dir("tboard") / "tb") + " " +
                                quote(out));
  ASSERT_EQ(read.exit_code, 0) << read.output;
  const auto tb = nlohmann::json::parse(read_text_file(out));
  int files = 0;
  std::string last_file;
  for (const auto& record : tb.at("records")) {
    EXPECT_TRUE(record.at("canonical").get<bool>()) << record.dump();
    if (record.at("file") != last_file) ++files;
    last_file = record.at("file");
  }
  EXPECT_EQ(files, 2) << "one events file per run of the job";

  // Every number of every line, under its key, at its step, once.
  std::map<std::string, std::vector<std::pair<int64_t, float>>> expected;
  for (const auto& row : rows) {
    for (const auto& [key, value] : row.items()) {
      if (key != "step" && value.is_number()) {
        expected[key].emplace_back(row.at("step").get<int64_t>(), static_cast<float>(value.get<double>()));
      }
    }
  }
  for (const char* key : {"loss", "lr", "time_step_s", "ranks_step_s_min", "ranks_step_s_median", "ranks_step_s_max",
                          "ranks_step_slowest", "ranks_data_s_max", "ranks_comm_slowest", "train_s"}) {
    EXPECT_EQ(expected.count(key), 1u) << key;
  }
  std::map<std::string, std::vector<std::pair<int64_t, float>>> got;
  for (const auto& [tag, points] : tb.at("scalars").items()) {
    for (const auto& point : points) {
      got[tag].emplace_back(point.at(0).get<int64_t>(), static_cast<float>(point.at(1).get<double>()));
    }
  }
  EXPECT_EQ(got, expected);
  for (const auto& row : rows) {
    EXPECT_LE(row.at("ranks_step_s_min").get<double>(), row.at("ranks_step_s_median").get<double>());
    EXPECT_LE(row.at("ranks_step_s_median").get<double>(), row.at("ranks_step_s_max").get<double>());
    EXPECT_GE(row.at("time_step_s").get<double>(), row.at("ranks_step_s_min").get<double>());
  }

  // logging.tensorboard = false writes none.
  r = run_command(train_command(1, "no-tboard", {"schedule.max_steps=1", "logging.tensorboard=false"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(run_dir("no-tboard") / "tb"));
}

TEST_F(TrainE2E, StragglerWarningNamesTheSlowRankAndItsHost) {
  // Rank 1 sleeps 1 s in every data phase: the job's step of B s becomes
  // 1 + B s, above factor 1.2 while B < 5 s (B was 0.85 s on a loaded 2-core
  // machine).
  auto r = run_command("MGCA_TEST_SLOW_RANK=1:1.0 " +
                       train_command(2, "slow-rank", {"schedule.max_steps=6", "checkpoint.every_steps=0",
                                                      "logging.straggler_factor=1.2",
                                                      "logging.straggler_intervals=3"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::array<char, 256> host{};
  gethostname(host.data(), host.size() - 1);
  // From step 3 on (the first step, with its one-time costs, may not count).
  const std::string warning = std::string("straggler: rank 1 on host ") + host.data() +
                              " has been behind for 3 logged intervals in a row (step ";
  EXPECT_EQ(count_lines_containing(r.output, warning), 1) << r.output;  // once, by rank 0
  EXPECT_EQ(count_lines_containing(r.output, "[rank 0] warning: straggler: rank"), 1) << r.output;
  EXPECT_EQ(count_lines_containing(r.output, "straggler: rank"), 1) << r.output;
  const auto rows = metrics("slow-rank");
  ASSERT_EQ(rows.size(), 6u);
  for (const auto& row : rows) {
    EXPECT_EQ(row.at("ranks_data_slowest").get<int>(), 1) << row.dump();
    EXPECT_GE(row.at("ranks_data_s_max").get<double>(), 1.0) << row.dump();
    EXPECT_LT(row.at("ranks_data_s_min").get<double>(), 1.0) << row.dump();
  }
}

// Resume on another world size with the same global batch N = 8: stopped at
// step 4 on 2 ranks × 4, resumed on 1 rank × 8 to step 10, then on 4 ranks ×
// 2 to step 16 (across the epoch boundary at step 12, where the prototypes
// unfreeze and the order reshuffles): the same per-step losses and final
// weights as the uninterrupted 2-rank run. Float64 for the reason above;
// dropout 0.1 (ci-tiny has none): its masks are keyed by the global sample
// index, so they do not depend on the world size either.
TEST_F(TrainE2E, ResumeOnAnotherWorldSizeContinuesTheSameTrajectory) {
  const std::vector<std::string> common = {"schedule.max_steps=16", "model.batchnorm=sync", "checkpoint.every_steps=0",
                                           "optimizer.lr=2e-5", "schedule.min_lr=1e-8", "runtime.dtype=float64",
                                           "model.dropout=0.1"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), common.begin(), common.end());
    return extra;
  };
  auto r = run_command(train_command(2, "w-straight", with({"data.batch_size=4"})));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(train_command(2, "w-moved", with({"data.batch_size=4", "schedule.stop_after_steps=4"})));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(train_command(1, "w-moved", with({"data.batch_size=8", "schedule.stop_after_steps=10"})));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(written at W = 2) at W = 1 × batch 8: the same global batch, so the same trajectory"),
            std::string::npos) << r.output;
  r = run_command(train_command(4, "w-moved", with({"data.batch_size=2"})));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(written at W = 1) at W = 4 × batch 2: the same global batch"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("unlike the uninterrupted run"), std::string::npos) << r.output;

  const auto straight = metrics("w-straight"), moved = metrics("w-moved");
  ASSERT_EQ(straight.size(), 16u);
  ASSERT_EQ(moved.size(), 16u);
  int compared = 0;
  for (size_t i = 0; i < straight.size(); ++i) {
    ASSERT_EQ(moved[i]["step"], straight[i]["step"]);
    for (const auto& [key, value] : straight[i].items()) {
      if (key.rfind("loss", 0) != 0 && key != "codes_entropy") continue;
      const double x = moved[i][key].get<double>(), y = value.get<double>();
      EXPECT_LE(std::abs(x - y), 1e-10 * std::abs(y)) << "step " << i + 1 << " " << key << ": " << x << " vs " << y;
      ++compared;
    }
  }
  EXPECT_EQ(compared, 16 * 11);  // total + 9 parts + the codes' entropy per step
  const auto a = train::load_model_tensors(final_checkpoint("w-straight"));
  const auto b = train::load_model_tensors(final_checkpoint("w-moved"));
  ASSERT_EQ(final_checkpoint("w-moved").filename(), train::checkpoint_name(16));
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, tensor] : a) EXPECT_TRUE(AllClose(b.at(name), tensor, 1e-5, 1e-9)) << name;
  EXPECT_EQ(moved.back()["epoch"].get<int>(), 1);
}

// ---- preemption ---------------------------------------------------------------------

bool wait_for(const std::function<bool()>& condition, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return condition();
}

TEST_F(TrainE2E, SignalToOneRankCheckpointsAllAndResumesExactly) {
  const std::vector<std::string> job = {"schedule.max_steps=24", "checkpoint.every_steps=0"};
  auto r = run_command(train_command(2, "uninterrupted", job));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::string name = "preempted";
  Background run(train_command(2, name, job), *dir_ / "preempted.log");
  ASSERT_TRUE(wait_for([&] { return metrics(name).size() >= 3; }, 300)) << read_text_file(*dir_ / "preempted.log");
  const pid_t rank1 = find_rank_process(1, {"output_dir=" + runs().string(), "name=" + name});
  ASSERT_GT(rank1, 0) << "rank 1 of the job not found";
  ASSERT_EQ(kill(rank1, SIGUSR1), 0);
  const int code = run.wait(300);
  const std::string log = read_text_file(*dir_ / "preempted.log");
  EXPECT_EQ(code, 75) << log;
  EXPECT_NE(log.find("preemption signal received"), std::string::npos) << log;
  const fs::path checkpoint = final_checkpoint(name);
  const int64_t step = std::stoll(checkpoint.filename().string().substr(5));
  EXPECT_GE(step, 3);
  EXPECT_LT(step, 24);
  EXPECT_TRUE(fs::exists(checkpoint / "rank-00000.state"));
  EXPECT_TRUE(fs::exists(checkpoint / "rank-00001.state"));
  EXPECT_EQ(metrics(name).back()["step"].get<int64_t>(), step);

  r = run_command(train_command(2, name, job));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(read_text_file(final_checkpoint("uninterrupted") / "model.safetensors") ==
              read_text_file(final_checkpoint(name) / "model.safetensors"))
      << "the resumed run's final weights differ from the uninterrupted run's";
  const auto ma = metrics("uninterrupted"), mb = metrics(name);
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) EXPECT_EQ(ma[i]["loss"], mb[i]["loss"]) << "step " << i + 1;
}

// ---- a killed rank -------------------------------------------------------------------

TEST_F(TrainE2E, KilledRankEndsTheJobAndTheNewestCheckpointStillLoads) {
  const double timeout = 30;
  const std::string name = "killed";
  const std::vector<std::string> job = {"schedule.max_steps=400", "checkpoint.every_steps=3",
                                        "comm.timeout_s=" + std::to_string(timeout)};
  Background run(train_command(2, name, job), *dir_ / "killed.log");
  ASSERT_TRUE(wait_for([&] { return metrics(name).size() >= 7; }, 300)) << read_text_file(*dir_ / "killed.log");
  const pid_t rank1 = find_rank_process(1, {"output_dir=" + runs().string(), "name=" + name});
  ASSERT_GT(rank1, 0);
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(rank1, SIGKILL), 0);
  const int code = run.wait(timeout + 60);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  const std::string log = read_text_file(*dir_ / "killed.log");
  ASSERT_NE(code, -1) << "the job did not end within " << timeout + 60 << " s:\n" << log;
  EXPECT_NE(code, 0) << log;
  EXPECT_LT(took, timeout + 30) << log;
  EXPECT_TRUE(log.find("signal 9") != std::string::npos || log.find("watchdog") != std::string::npos) << log;

  // The newest complete checkpoint loads and the run resumes from it.
  const fs::path checkpoint = final_checkpoint(name);
  const int64_t step = std::stoll(checkpoint.filename().string().substr(5));
  EXPECT_GE(step, 3);
  EXPECT_NO_THROW(train::load_model_tensors(checkpoint));
  EXPECT_NO_THROW(train::load_optimizer_tensors(checkpoint));
  const auto r = run_command(train_command(2, name, {"schedule.max_steps=400", "checkpoint.every_steps=3",
                                                     "schedule.stop_after_steps=" + std::to_string(step + 2)}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + checkpoint.string()), std::string::npos) << r.output;
  EXPECT_EQ(final_checkpoint(name).filename(), train::checkpoint_name(step + 2));
}

// ---- kills during checkpoint writes ---------------------------------------------------

// The highest N of a step-N.tmp folder (a checkpoint being written) changed
// since `since` (a killed run leaves its folder behind), or -1.
int64_t newest_write_in_progress(const fs::path& dir, fs::file_time_type since) {
  int64_t newest = -1;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    std::error_code gone;  // the folder may be renamed while we look
    if (name.rfind("step-", 0) == 0 && name.size() > 9 && name.compare(name.size() - 4, 4, ".tmp") == 0 &&
        fs::last_write_time(entry.path(), gone) >= since && !gone) {
      newest = std::max<int64_t>(newest, std::stoll(name.substr(5, name.size() - 9)));
    }
  }
  return newest;
}

TEST_F(TrainE2E, KillsDuringCheckpointWritesAlwaysLeaveTheLastCompleteOne) {
  const std::vector<std::string> job = {"schedule.max_steps=60", "checkpoint.every_steps=1", "checkpoint.keep=2",
                                        "comm.timeout_s=30"};
  const std::string name = "kill-writes";
  const fs::path checkpoints = run_dir(name) / "checkpoints";
  std::mt19937 random(20261205);
  int64_t last_complete = -1;  // the newest complete checkpoint seen so far
  int landed_in_writes = 0;
  for (int kill_number = 0; kill_number < 20; ++kill_number) {
    const fs::path log_file = *dir_ / fmt::format("kill-writes-{}.log", kill_number);
    const auto started = fs::file_time_type::clock::now();
    Background run(train_command(2, name, job), log_file);
    // Start of the kill: a write of a step past where this run resumed (the
    // first or second it starts), then 0–15 ms into it.
    const int64_t target = std::max<int64_t>(last_complete, 0) + 1 + std::uniform_int_distribution<int>(0, 1)(random);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
    while (newest_write_in_progress(checkpoints, started) < target && run.running() &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    ASSERT_TRUE(run.running()) << "the run ended before its write of step " << target << ":\n"
                               << read_text_file(log_file);
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 15000)(random)));
    const int rank = std::uniform_int_distribution<int>(0, 1)(random);
    const pid_t pid = find_rank_process(rank, {"output_dir=" + runs().string(), "name=" + name});
    ASSERT_GT(pid, 0) << "rank " << rank << " not found";
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    landed_in_writes += newest_write_in_progress(checkpoints, started) >= 0 ? 1 : 0;
    const int code = run.wait(120);
    const std::string log = read_text_file(log_file);
    ASSERT_NE(code, -1) << "the killed job did not end:\n" << log;
    EXPECT_NE(code, 0) << log;
    // This run resumed from the newest complete checkpoint of the runs before it.
    if (last_complete >= 0) {
      EXPECT_NE(log.find("resumed from " + (checkpoints / train::checkpoint_name(last_complete)).string()),
                std::string::npos)
          << log;
    } else {
      EXPECT_EQ(log.find("resumed from"), std::string::npos) << log;
    }

    const auto newest = train::newest_checkpoint(checkpoints);
    if (!newest) {
      EXPECT_EQ(last_complete, -1) << "kill " << kill_number << " lost every complete checkpoint";
      continue;
    }
    EXPECT_GE(newest->step, last_complete) << "kill " << kill_number << " lost a complete checkpoint";
    EXPECT_EQ(train::load_model_metadata(newest->path).at("step"), std::to_string(newest->step));
    EXPECT_NO_THROW(train::load_model_tensors(newest->path)) << newest->path;
    EXPECT_NO_THROW(train::load_optimizer_tensors(newest->path)) << newest->path;
    for (int r = 0; r < 2; ++r) {
      const auto state = train::load_rank_state(newest->path, r);
      ASSERT_TRUE(state.has_value()) << newest->path << " lacks rank " << r;
      EXPECT_EQ(state->step, newest->step);
    }
    last_complete = newest->step;
  }
  std::printf("[ info ] %d of 20 kills found a checkpoint write in progress; resumed up to step %lld\n",
              landed_in_writes, static_cast<long long>(last_complete));

  // Resumed to the end, the run equals an uninterrupted one bit for bit.
  auto r = run_command(train_command(2, name, job));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(train_command(2, "kill-writes-reference", job));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(read_text_file(final_checkpoint(name) / "model.safetensors") ==
              read_text_file(final_checkpoint("kill-writes-reference") / "model.safetensors"))
      << "after 20 kills the final weights differ from the uninterrupted run's";
  EXPECT_TRUE(read_text_file(final_checkpoint(name) / "optimizer.safetensors") ==
              read_text_file(final_checkpoint("kill-writes-reference") / "optimizer.safetensors"));
}

}  // namespace
}  // namespace mgca::test
