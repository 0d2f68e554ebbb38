// `mgca train` and the other commands on corrupt state and bad input:
//  - a corrupt or missing rank-NNNNN.state is an error naming the file and
//    the rank; resume = "auto" falls back to the previous complete
//    checkpoint when the newest is unreadable, and says so;
//  - a second run with the same name fails at start naming the folder and
//    the holder;
//  - SIGTERM or Ctrl-C to scripts/mpirun-preemptible: the ranks checkpoint
//    and the wrapper exits 75;
//  - a changed byte inside a report is caught by the shard checksum;
//  - the unclear messages of issue 17 are clear, with the documented exit codes.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "mgca/build_config.h"
#include "mgca/io/dataset_file.h"
#include "mgca/train/checkpoint.h"
#include "process.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace mgca::test {
namespace {

class TrainRobust : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("mgca-e2e-robust");
    const auto r = run_command(mgca_program().string() + " synth --out " + quote((*dir_ / "synth").string()) +
                               " --num 48 --image-size 72 --seed 5");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static fs::path runs() { return *dir_ / "runs"; }
  static fs::path vocab() { return shared_data_dir() / "vocab" / "bert-base-cased-vocab.txt"; }

  // `launcher` -np N mgca train jobs/ci-tiny.toml --set … (paths into the temporary folder).
  static std::string train_command(int np, const std::string& name, const std::vector<std::string>& extra = {},
                                   const std::string& launcher = MGCA_MPIEXEC, const std::string& job = "") {
    std::string command = launcher + " --allow-run-as-root --oversubscribe --bind-to none -np " + std::to_string(np) +
                          " " + mgca_program().string() + " train " +
                          quote(job.empty() ? (source_dir() / "jobs" / "ci-tiny.toml").string() : job);
    std::vector<std::string> sets = {"data.train=" + (*dir_ / "synth").string(), "text.vocab=" + vocab().string(),
                                     "output_dir=" + runs().string(), "name=" + name, "runtime.threads=1",
                                     "logging.progress_interval_s=1000"};
    sets.insert(sets.end(), extra.begin(), extra.end());
    for (const auto& s : sets) command += " --set " + quote(s);
    return command;
  }

  static TempDir* dir_;
};

TempDir* TrainRobust::dir_ = nullptr;

void expect_output(const CommandResult& r, int code, const std::vector<std::string>& expected) {
  EXPECT_EQ(r.exit_code, code) << r.output;
  for (const auto& text : expected) {
    EXPECT_NE(r.output.find(text), std::string::npos) << "expected '" << text << "' in:\n" << r.output;
  }
}

// Waits until `path` exists and is not empty; false after `seconds`.
bool wait_for_file(const fs::path& path, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    std::error_code error;
    if (fs::exists(path, error) && fs::file_size(path, error) > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

TEST_F(TrainRobust, CorruptOrMissingRankStateNamesTheFileAndAutoFallsBack) {
  const std::string name = "state";
  const fs::path checkpoints = runs() / name / "checkpoints";
  auto r = run_command(train_command(2, name, {"schedule.max_steps=4", "checkpoint.every_steps=2"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path step2 = checkpoints / train::checkpoint_name(2), step4 = checkpoints / train::checkpoint_name(4);
  ASSERT_TRUE(train::is_complete_checkpoint(step2) && train::is_complete_checkpoint(step4)) << r.output;

  // Corrupt: rank 1's state of step 4 overwritten with garbage.
  write_text_file(step4 / "rank-00001.state", "22 serialization::archive 19 1 garbage\n");
  r = run_command(train_command(2, name, {"schedule.max_steps=6", "checkpoint.every_steps=2",
                                          "checkpoint.resume=" + step4.string()}));
  expect_output(r, 1, {"[rank 1]", (step4 / "rank-00001.state").string(), "corrupt"});

  // resume = auto: step 4 is unreadable, so the run continues from step 2 and says so.
  r = run_command(train_command(2, name, {"schedule.max_steps=6", "checkpoint.every_steps=2"}));
  expect_output(r, 0, {"checkpoint " + step4.string() + " is unreadable", "falling back to the previous complete checkpoint, " + step2.string(),
                       "resumed from " + step2.string() + " at step 2"});
  const fs::path step6 = checkpoints / train::checkpoint_name(6);
  ASSERT_TRUE(train::is_complete_checkpoint(step6)) << r.output;

  // Missing: a rank of the writing world without its state file is an error, not a warning.
  fs::remove(step6 / "rank-00001.state");
  r = run_command(train_command(2, name, {"schedule.max_steps=8", "checkpoint.resume=" + step6.string()}));
  expect_output(r, 1, {"[rank 1]", "written by 2 ranks but the state of rank 1", "is missing"});
}

TEST_F(TrainRobust, SecondRunWithTheSameNameFailsAtStart) {
  const std::string name = "locked";
  Background first(train_command(1, name, {"schedule.max_steps=100000", "checkpoint.every_steps=100000"}),
                   *dir_ / "locked-first.log");
  ASSERT_TRUE(wait_for_file(runs() / name / "run.lock", 180)) << read_text_file(*dir_ / "locked-first.log");
  const auto r = run_command(train_command(2, name, {"schedule.max_steps=2"}));
  expect_output(r, 1, {"the run folder '" + (runs() / name).string() + "' is in use by another run", "pid ",
                       "run.lock"});
  EXPECT_TRUE(first.running()) << "the second run disturbed the first:\n" << read_text_file(*dir_ / "locked-first.log");
}

// scripts/mpirun-preemptible turns SIGTERM and Ctrl-C (SIGINT to the whole
// foreground process group) into a checkpoint and exit 75.
TEST_F(TrainRobust, SigtermAndCtrlCToTheWrapperCheckpointAndExit75) {
  const std::string wrapper = (source_dir() / "scripts" / "mpirun-preemptible").string();
  for (const bool whole_group : {false, true}) {
    const std::string name = whole_group ? "ctrl-c" : "sigterm";
    const fs::path log = *dir_ / (name + ".log");
    Background job("env MPIRUN=" + std::string(MGCA_MPIEXEC) + " " +
                       train_command(2, name,
                                     {"schedule.max_steps=100000", "checkpoint.every_steps=100000",
                                      "logging.every_steps=1"},
                                     wrapper),
                   log);
    ASSERT_TRUE(wait_for_file(runs() / name / "metrics.jsonl", 240)) << read_text_file(log);
    ASSERT_EQ(whole_group ? kill(-job.pid(), SIGINT) : kill(job.pid(), SIGTERM), 0);
    const int code = job.wait(240);
    EXPECT_EQ(code, 75) << read_text_file(log);
    EXPECT_TRUE(train::newest_checkpoint(runs() / name / "checkpoints").has_value()) << read_text_file(log);
  }
}

TEST_F(TrainRobust, AChangedByteInAReportIsCaughtByTheChecksum) {
  const fs::path copy = *dir_ / "synth-edited";
  fs::copy(*dir_ / "synth", copy);
  const auto dataset = io::Dataset::open(copy);
  const std::string report = dataset->report(3);
  const fs::path shard = copy / dataset->manifest().shards.at(0).file;
  std::string bytes = read_text_file(shard);
  const size_t at = bytes.find(report);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 1] = bytes[at + 1] == 'x' ? 'y' : 'x';
  write_text_file(shard, bytes);
  const auto r = run_command(train_command(2, "edited", {"data.train=" + copy.string()}) + " --dry-run");
  expect_output(r, 2, {"bad job:", shard.string(), "SHA-256", "import the dataset again"});
}

TEST_F(TrainRobust, BadInputGivesClearMessagesAndTheDocumentedExitCodes) {
  const std::string mgca = mgca_program().string();
  // A folder as the job file, the vocabulary or the encoder.
  auto r = run_command(train_command(1, "folder-job", {}, MGCA_MPIEXEC, dir_->path().string()));
  expect_output(r, 2, {"bad job:", "the job file '" + dir_->path().string() + "' is a folder, not a file"});
  r = run_command(train_command(1, "folder-vocab", {"text.vocab=" + dir_->path().string()}));
  expect_output(r, 2, {"text.vocab: vocabulary file '" + dir_->path().string() + "' is a folder, not a file"});
  r = run_command(mgca + " eval probe --encoder " + quote(dir_->path().string()) + " --train " +
                  quote((*dir_ / "synth").string()) + " --test " + quote((*dir_ / "synth").string()));
  expect_output(r, 1, {"--encoder: exported encoder file '" + dir_->path().string() + "' is a folder, not a file"});
  // Caught as a bad job before start-up: a vocabulary without [PAD], a
  // micro-batch larger than the dataset, crops larger than the images.
  write_text_file(*dir_ / "bad-vocab.txt", "[UNK]\n[CLS]\n[SEP]\nlung\n");
  r = run_command(train_command(2, "bad-vocab", {"text.vocab=" + (*dir_ / "bad-vocab.txt").string()}));
  expect_output(r, 2, {"bad job:", "text.vocab: not a usable vocabulary", "has no [PAD] token"});
  r = run_command(train_command(2, "big-batch", {"data.batch_size=30"}));
  expect_output(r, 2, {"bad job:", "data.batch_size: 2 ranks x 30 samples = 60 samples per micro-batch, more than the 48"});
  ASSERT_EQ(run_command(mgca + " synth --out " + quote((*dir_ / "small").string()) + " --num 16 --image-size 48").exit_code, 0);
  r = run_command(train_command(2, "big-crop", {"data.train=" + (*dir_ / "small").string()}));
  expect_output(r, 2, {"bad job:", "model.image_size: 64-pixel crops do not fit the 48-pixel images"});
  // A range error names the --set that caused it.
  r = run_command(train_command(1, "bad-set", {"data.batch_size=0"}));
  expect_output(r, 2, {"--set data.batch_size=0: key 'data.batch_size': 0 must be >= 1"});
  // Counts that must be positive say so.
  r = run_command(mgca + " synth --out " + quote((*dir_ / "zero").string()) + " --num 0");
  expect_output(r, 2, {"--num: must be a positive number, got 0"});
  r = run_command(mgca + " eval probe --encoder x.safetensors --train a --test b --seeds 0");
  expect_output(r, 2, {"--seeds: must be a positive number, got 0"});
  // eval usage errors found after parsing exit 2.
  r = run_command(mgca + " eval probe --train " + quote((*dir_ / "synth").string()) + " --test " +
                  quote((*dir_ / "synth").string()));
  expect_output(r, 2, {"give at least one --checkpoint or --encoder", "mgca eval --help"});
  // Outside an MPI job there is no "[rank -1]".
  r = run_command(mgca + " info " + quote((*dir_ / "no-such-checkpoint").string()));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.find("[rank -1]"), std::string::npos) << r.output;
  r = run_command(mgca + " export " + quote((*dir_ / "no-such-checkpoint").string()) + " --out " +
                  quote((*dir_ / "out.safetensors").string()));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("[rank -1]"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace mgca::test
