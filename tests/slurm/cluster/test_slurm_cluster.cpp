// The project's SLURM scripts against a real SLURM (docs/contract.md §8).
//
// The test environment installs the dependencies (scripts/install-deps, a
// no-op when present), starts a one-node SLURM with scripts/slurm-local
// (munge, slurmctld, slurmd; everything under a temporary folder, with two
// placeholder GPUs; stopped at the end, and by its watcher should this
// program die first) and synthesizes a tiny dataset with `mgca synth`. The
// tests submit slurm/train.sbatch and run slurm/sweep exactly as a user
// would, with the built mgca program, and check what the jobs leave behind.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mgca/util/error.h"
#include "support/test_support.h"

namespace fs = std::filesystem;
using mgca::test::CommandResult;
using mgca::test::read_text_file;
using mgca::test::run_command;
using mgca::test::write_text_file;

namespace {

// CI-tiny run lengths: long enough that a preemption lands mid-run, short
// enough that the label takes minutes. Checkpoints every 4 steps, keep 2.
constexpr int kSteps = 24;
constexpr int kEvery = 4;
constexpr double kJobTimeout = 300;  // seconds a single job may take here

std::string q(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}
std::string q(const fs::path& path) { return q(path.string()); }

std::string trim(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  size_t begin = 0;
  while (begin < text.size() && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
  return text.substr(begin);
}

int count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

void sleep_s(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

// ---- the cluster, shared by every test --------------------------------------

struct Cluster {
  std::unique_ptr<mgca::test::TempDir> root;
  fs::path dir;      // SLURM's own files (scripts/slurm-local DIR)
  fs::path work;     // the jobs' working directory: logs/, runs/, data/, sweeps
  fs::path dataset;
  bool started = false;
  std::string failure;  // why the set-up failed; empty when ready
  std::string skip;     // why the tests cannot run here (no SLURM binaries)
};

Cluster& cluster() {
  static Cluster instance;
  return instance;
}

fs::path slurm_local() { return mgca::test::source_dir() / "scripts" / "slurm-local"; }
fs::path train_sbatch() { return mgca::test::source_dir() / "slurm" / "train.sbatch"; }
fs::path sweep_program() { return mgca::test::source_dir() / "slurm" / "sweep"; }
fs::path vocab() { return mgca::test::shared_data_dir() / "vocab" / "bert-base-cased-vocab.txt"; }

class SlurmEnvironment : public testing::Environment {
 public:
  void SetUp() override {
    Cluster& c = cluster();
    const CommandResult deps = run_command(q(mgca::test::source_dir() / "scripts" / "install-deps"));
    // Skipped only where the SLURM and munge programs are missing (and could
    // not be installed); any later failure to start them fails the tests.
    const CommandResult tools = run_command("for t in munged slurmctld slurmd sbatch scontrol; do "
                                            "command -v $t >/dev/null || printf ' %s' $t; done");
    if (!trim(tools.output).empty()) {
      c.skip = "no SLURM on this machine (not on PATH:" + tools.output +
               "); scripts/install-deps exited " + std::to_string(deps.exit_code) + ":\n" + deps.output;
      return;
    }
    c.root = std::make_unique<mgca::test::TempDir>("mgca-slurm");
    c.dir = c.root->path() / "cluster";
    c.work = c.root->path() / "work";
    fs::create_directories(c.work / "logs");
    const CommandResult start = run_command(q(slurm_local()) + " start " + q(c.dir) +
                                            " --gpus 2 --watch " + std::to_string(getpid()));
    c.started = true;  // stop even a half-started cluster
    if (start.exit_code != 0) {
      c.failure = "scripts/slurm-local start failed:\n" + start.output;
      return;
    }
    setenv("SLURM_CONF", (c.dir / "slurm.conf").c_str(), 1);
    // The jobs below run two one-CPU ranks at once; a node declared smaller
    // would leave them pending until the timeout.
    const CommandResult cpus = run_command("sinfo -h -o %c");
    if (cpus.exit_code != 0 || std::atoi(cpus.output.c_str()) < 2) {
      c.failure = "the one-node SLURM offers " + trim(cpus.output) + " CPUs; the tests need 2:\n" +
                  read_text_file(c.dir / "slurm.conf");
      return;
    }
    c.dataset = c.work / "data" / "synth";
    const CommandResult synth = run_command(q(mgca::test::mgca_program()) + " synth --out " + q(c.dataset) +
                                            " --num 64 --image-size 72 --seed 3 --threads 1");
    if (synth.exit_code != 0) c.failure = "mgca synth failed:\n" + synth.output;
  }

  void TearDown() override {
    Cluster& c = cluster();
    if (c.started) {
      const CommandResult stop = run_command(q(slurm_local()) + " stop " + q(c.dir));
      EXPECT_EQ(stop.exit_code, 0) << stop.output;
      const CommandResult status = run_command(q(slurm_local()) + " status " + q(c.dir));
      EXPECT_NE(status.exit_code, 0) << "daemons still running after stop:\n" << status.output;
    }
    c.root.reset();
  }
};

const testing::Environment* const kEnvironment = testing::AddGlobalTestEnvironment(new SlurmEnvironment);

#define REQUIRE_CLUSTER()                                                 \
  do {                                                                    \
    if (!cluster().skip.empty()) GTEST_SKIP() << cluster().skip;          \
    ASSERT_TRUE(cluster().failure.empty()) << cluster().failure;          \
  } while (0)

// ---- jobs ------------------------------------------------------------------------

struct Job {
  std::string id;
  std::string name;
  fs::path log;
};

// The environment every submission carries: the program under test and the
// checkout whose git commit the log reports.
std::string job_environment() {
  return "MGCA_BIN=" + q(mgca::test::mgca_program()) + " MGCA_ROOT=" + q(mgca::test::source_dir());
}

// CPU ranks on this GPU-less node: the command line overrides the script's
// --gpus-per-task=1 (and its 4 tasks and 8 CPUs per task).
const char* const kCpuRanks = "--gpus-per-task=0 --ntasks-per-node=2 --cpus-per-task=1";

Job submit(const std::string& name, const std::string& sbatch_options, const std::string& job_arguments,
           const std::string& environment = job_environment(), const fs::path& script = train_sbatch()) {
  Job job{"", name, cluster().work / "logs" / (name + ".log")};
  const std::string command = "cd " + q(cluster().work) + " && env " + environment +
                              " sbatch --parsable --job-name=" + name + " --output=" + q(job.log) + " " +
                              sbatch_options + " " + q(script) + " " + job_arguments;
  const CommandResult result = run_command(command);
  MGCA_CHECK(result.exit_code == 0, "sbatch failed ({}): {}\n{}", result.exit_code, command, result.output);
  job.id = trim(result.output.substr(0, result.output.find(';')));
  return job;
}

std::string log_of(const Job& job) { return fs::exists(job.log) ? read_text_file(job.log) : "(no log)"; }

// Until the job has left the queue for good (a requeued job is listed again,
// as pending, until its next run ends).
void wait_for(const Job& job, double seconds = kJobTimeout) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    const CommandResult result = run_command("squeue -h -o %T -j " + job.id);
    if (trim(result.output).empty() || result.output.find("Invalid job id") != std::string::npos) return;
    sleep_s(0.2);
  }
  run_command("scancel " + job.id);
  MGCA_FAIL("job {} ({}) did not end within {} s; its log:\n{}", job.id, job.name, seconds, log_of(job));
}

// JobState, Restarts and ExitCode of a job that ended (scontrol keeps ended
// jobs for MinJobAge, 300 s).
struct JobEnd {
  std::string state;
  int restarts = -1;
  std::string exit_code;
};

JobEnd job_end(const Job& job) {
  const CommandResult result = run_command("scontrol show job -o " + job.id);
  MGCA_CHECK(result.exit_code == 0, "scontrol show job {}: {}", job.id, result.output);
  JobEnd end;
  std::smatch match;
  if (std::regex_search(result.output, match, std::regex(R"(\bJobState=(\S+))"))) end.state = match[1];
  if (std::regex_search(result.output, match, std::regex(R"(\bRestarts=(\d+))"))) end.restarts = std::stoi(match[1]);
  if (std::regex_search(result.output, match, std::regex(R"(\bExitCode=(\S+))"))) end.exit_code = match[1];
  return end;
}

std::vector<nlohmann::json> read_metrics(const fs::path& run) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (!trim(line).empty()) lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

// Until the run has logged a step (the trainer is past its start-up and its
// signal handlers are in place).
void wait_for_progress(const Job& job, const fs::path& run) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(kJobTimeout);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(run / "metrics.jsonl");
    std::string line;
    if (std::getline(in, line) && !trim(line).empty() && in.good()) return;
    const CommandResult queue = run_command("squeue -h -o %T -j " + job.id);
    MGCA_CHECK(!trim(queue.output).empty(), "job {} ended before logging a step; its log:\n{}", job.id,
               log_of(job));
    sleep_s(0.05);
  }
  MGCA_FAIL("job {} logged no step within {} s; its log:\n{}", job.id, kJobTimeout, log_of(job));
}

// jobs/ci-tiny.toml on the test's dataset, writing output_dir/name.
std::string ci_tiny(const std::string& name, int steps, int every, const std::string& extra = "",
                    const std::string& output_dir = (cluster().work / "runs").string()) {
  return q(mgca::test::source_dir() / "jobs" / "ci-tiny.toml") + " --set name=" + name +
         " --set output_dir=" + q(output_dir) + " --set data.train=" + q(cluster().dataset) +
         " --set text.vocab=" + q(vocab()) + " --set schedule.max_steps=" + std::to_string(steps) +
         " --set checkpoint.every_steps=" + std::to_string(every) + extra;
}

fs::path run_dir(const std::string& name) { return cluster().work / "runs" / name; }

// The uninterrupted and the preempted run must have the same resolved
// config, which checkpoints record: the same name and the same relative
// output_dir, in working directories of their own.
Job submit_twin(const std::string& job_name) {
  const fs::path dir = cluster().work / job_name;
  fs::create_directories(dir);
  return submit(job_name, std::string(kCpuRanks) + " --chdir=" + q(dir), ci_tiny("ci-tiny", kSteps, kEvery, "", "runs"));
}
fs::path twin_run_dir(const std::string& job_name) { return cluster().work / job_name / "runs" / "ci-tiny"; }

fs::path newest_checkpoint(const fs::path& run) {
  fs::path newest;
  if (!fs::is_directory(run / "checkpoints")) return newest;
  for (const auto& entry : fs::directory_iterator(run / "checkpoints")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) == 0 && name.find(".tmp") == std::string::npos &&
        fs::exists(entry.path() / "DONE") && (newest.empty() || name > newest.filename().string())) {
      newest = entry.path();
    }
  }
  return newest;
}

// The uninterrupted CI-tiny run on two CPU ranks; the preemption test
// compares its weights with this one.
struct TrainRun {
  Job job;
  fs::path dir;
  JobEnd end;
};

const TrainRun& reference_run() {
  static std::optional<TrainRun> run;
  if (!run) {
    Job job = submit_twin("reference");
    wait_for(job);
    run = TrainRun{job, twin_run_dir("reference"), job_end(job)};
  }
  return *run;
}

// ---- train.sbatch ------------------------------------------------------------------

TEST(TrainSbatch, RunsTheCiTinyJobOnTwoCpuRanks) {
  REQUIRE_CLUSTER();
  const TrainRun& run = reference_run();
  const std::string log = log_of(run.job);
  const JobEnd& end = run.end;
  ASSERT_EQ(end.state, "COMPLETED") << log;
  EXPECT_EQ(end.exit_code, "0:0");
  EXPECT_EQ(end.restarts, 0);

  // The log: the script's header (job, nodes, tasks, commit, command), the
  // placement of both ranks, the trainer's rank-0 lines once, the outcome.
  EXPECT_NE(log.find("train.sbatch: job " + run.job.id + " (reference), run 1 (SLURM_RESTART_COUNT=0)"),
            std::string::npos) << log;
  EXPECT_NE(log.find("train.sbatch: nodes: 1 ("), std::string::npos) << log;
  EXPECT_NE(log.find("tasks: 2 (2 per node), 1 CPUs and 0 GPUs per task"), std::string::npos) << log;
  EXPECT_TRUE(std::regex_search(log, std::regex("source: " + mgca::test::source_dir().string() +
                                                R"( \(git [0-9a-f]{12}(-dirty)?\))")))
      << log;
  EXPECT_NE(log.find("working directory: " + (cluster().work / "reference").string() + "; srun --mpi=pmix"),
            std::string::npos) << log;
  EXPECT_NE(log.find("command: " + mgca::test::mgca_program().string() + " train " +
                     (mgca::test::source_dir() / "jobs" / "ci-tiny.toml").string() +
                     " --set runtime.threads=1 --set name=ci-tiny --set output_dir=runs"),
            std::string::npos) << log;
  EXPECT_NE(log.find("rank 0: host"), std::string::npos) << log;
  EXPECT_NE(log.find("rank 1: host"), std::string::npos) << log;
  // One world of two ranks, reported by rank 0 only.
  EXPECT_EQ(count(log, "ci-tiny: 2 ranks × batch 4 × accumulate 1 = 8 samples per step"), 1) << log;
  EXPECT_NE(log.find("mgca train finished (run 1 of job " + run.job.id + ")"), std::string::npos) << log;

  // The resolved config, as the trainer saved it with the run.
  const std::string config = read_text_file(run.dir / "config.toml");
  EXPECT_TRUE(std::regex_search(config, std::regex(R"(\bname = ['"]ci-tiny['"])"))) << config;
  EXPECT_TRUE(std::regex_search(config, std::regex("max_steps = " + std::to_string(kSteps) + "\\b"))) << config;
  EXPECT_TRUE(std::regex_search(config, std::regex(R"(\bthreads = 1\b)"))) << config;
  EXPECT_NE(config.find(cluster().dataset.string()), std::string::npos) << config;

  // One metrics line per step, in order, with a throughput.
  const auto metrics = read_metrics(run.dir);
  ASSERT_EQ(metrics.size(), static_cast<size_t>(kSteps));
  for (int i = 0; i < kSteps; ++i) {
    EXPECT_EQ(metrics[i].at("step").get<int>(), i + 1);
    EXPECT_GT(metrics[i].at("samples_per_s").get<double>(), 0.0);
  }

  // The final checkpoint is complete.
  const fs::path last = newest_checkpoint(run.dir);
  ASSERT_FALSE(last.empty()) << "no complete checkpoint in " << run.dir;
  std::ostringstream name;
  name << "step-" << std::setw(8) << std::setfill('0') << kSteps;
  EXPECT_EQ(last.filename().string(), name.str());
  EXPECT_TRUE(fs::exists(last / "model.safetensors"));
  EXPECT_TRUE(fs::exists(last / "DONE"));
}

// Every step logged once with the uninterrupted run's values, and the same
// final weights, byte for byte.
void expect_same_as_reference(const fs::path& run) {
  const fs::path reference_dir = reference_run().dir;
  const auto metrics = read_metrics(run);
  const auto expected = read_metrics(reference_dir);
  ASSERT_EQ(metrics.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(expected.size(), static_cast<size_t>(kSteps));
  for (int i = 0; i < kSteps; ++i) {
    EXPECT_EQ(metrics[i].at("step").get<int>(), i + 1);
    for (const auto& [key, value] : expected[i].items()) {
      if (key.rfind("time_", 0) == 0 || key.rfind("ranks_", 0) == 0 || key.rfind("mem_", 0) == 0 ||
          key == "samples_per_s" || key == "train_s") {
        continue;  // wall-clock figures differ between runs
      }
      EXPECT_EQ(metrics[i].value(key, nlohmann::json()), value) << "step " << i + 1 << ", " << key;
    }
  }

  // The same final weights, byte for byte.
  const fs::path last = newest_checkpoint(run);
  const fs::path expected_last = newest_checkpoint(reference_dir);
  ASSERT_FALSE(last.empty());
  EXPECT_EQ(last.filename(), expected_last.filename());
  const std::string weights = read_text_file(last / "model.safetensors");
  EXPECT_GT(weights.size(), 1000u);
  EXPECT_TRUE(weights == read_text_file(expected_last / "model.safetensors"))
      << "model.safetensors of " << run << " differs from the uninterrupted run's";
}

TEST(TrainSbatch, PreemptedJobCheckpointsIsRequeuedResumesAndMatchesTheUninterruptedRun) {
  REQUIRE_CLUSTER();
  const TrainRun& reference = reference_run();
  ASSERT_EQ(reference.end.state, "COMPLETED") << log_of(reference.job);

  const Job job = submit_twin("preempted");
  const fs::path run = twin_run_dir("preempted");
  wait_for_progress(job, run);
  // What SLURM does 120 s before the time limit (--signal=B:USR1@120), now.
  const CommandResult signal = run_command("scancel --signal=USR1 --batch " + job.id);
  ASSERT_EQ(signal.exit_code, 0) << signal.output;
  wait_for(job);

  const std::string log = log_of(job);
  const JobEnd end = job_end(job);
  ASSERT_EQ(end.restarts, 1) << "the job was not requeued (did it finish before the signal?):\n" << log;
  EXPECT_EQ(end.state, "COMPLETED") << log;
  EXPECT_EQ(end.exit_code, "0:0");

  std::smatch match;
  ASSERT_TRUE(std::regex_search(log, match, std::regex(R"(preemption signal received: checkpointing at step (\d+))")))
      << log;
  const int stopped_at = std::stoi(match[1]);
  EXPECT_GT(stopped_at, 0);
  EXPECT_LT(stopped_at, kSteps);
  EXPECT_NE(log.find("train.sbatch: SIGUSR1"), std::string::npos) << log;
  EXPECT_NE(log.find("mgca train stopped for preemption with status 75"), std::string::npos) << log;
  EXPECT_NE(log.find("requeued job " + job.id + ": run 2 resumes"), std::string::npos) << log;
  EXPECT_NE(log.find("job " + job.id + " (preempted), run 2 (SLURM_RESTART_COUNT=1)"), std::string::npos) << log;
  EXPECT_NE(log.find("--set checkpoint.resume=auto"), std::string::npos) << log;
  EXPECT_TRUE(std::regex_search(log, std::regex("resumed from \\S*step-0*" + std::to_string(stopped_at) +
                                                " at step " + std::to_string(stopped_at) + " of " +
                                                std::to_string(kSteps))))
      << log;
  EXPECT_NE(log.find("mgca train finished (run 2 of job " + job.id + ")"), std::string::npos) << log;
  expect_same_as_reference(run);
}

// `scontrol requeue` from outside: SLURM ends the run with SIGTERM (the ranks
// checkpoint within KillWait), the script does not requeue it a second time,
// and SLURM's own requeue resumes it to the same end.
TEST(TrainSbatch, ScontrolRequeuedJobResumesAndMatchesTheUninterruptedRun) {
  REQUIRE_CLUSTER();
  ASSERT_EQ(reference_run().end.state, "COMPLETED") << log_of(reference_run().job);

  const Job job = submit_twin("scontrol-requeued");
  const fs::path run = twin_run_dir("scontrol-requeued");
  wait_for_progress(job, run);
  const CommandResult requeue = run_command("scontrol requeue " + job.id);
  ASSERT_EQ(requeue.exit_code, 0) << requeue.output;
  wait_for(job);

  const std::string log = log_of(job);
  const JobEnd end = job_end(job);
  ASSERT_EQ(end.restarts, 1) << "the job was not requeued (did it finish before the requeue?):\n" << log;
  EXPECT_EQ(end.state, "COMPLETED") << log;
  EXPECT_EQ(end.exit_code, "0:0");
  EXPECT_NE(log.find("train.sbatch: SIGTERM"), std::string::npos) << log;
  EXPECT_EQ(log.find("requeued job " + job.id), std::string::npos) << "the script requeued as well:\n" << log;
  EXPECT_NE(log.find("job " + job.id + " (scontrol-requeued), run 2 (SLURM_RESTART_COUNT=1)"), std::string::npos)
      << log;
  EXPECT_TRUE(std::regex_search(log, std::regex(R"(resumed from \S*step-0*[1-9]\d* at step [1-9]\d* of )" +
                                                std::to_string(kSteps))))
      << log;
  EXPECT_NE(log.find("mgca train finished (run 2 of job " + job.id + ")"), std::string::npos) << log;
  expect_same_as_reference(run);
}

TEST(TrainSbatch, CancelledJobCheckpointsAndIsNotRequeued) {
  REQUIRE_CLUSTER();
  // Far more steps than it will run; checkpoints only at the end or on a signal.
  const Job job = submit("cancelled", kCpuRanks, ci_tiny("cancelled", 100000, 0));
  const fs::path run = run_dir("cancelled");
  wait_for_progress(job, run);
  const CommandResult cancel = run_command("scancel " + job.id);
  ASSERT_EQ(cancel.exit_code, 0) << cancel.output;
  wait_for(job);

  const std::string log = log_of(job);
  const JobEnd end = job_end(job);
  EXPECT_EQ(end.state, "CANCELLED") << log;
  EXPECT_EQ(end.restarts, 0) << log;
  EXPECT_NE(log.find("train.sbatch: SIGTERM"), std::string::npos) << log;
  EXPECT_NE(log.find("mgca train stopped after SIGTERM with status 75; not requeueing"), std::string::npos) << log;
  EXPECT_EQ(log.find("requeued job"), std::string::npos) << log;
  // SIGTERM still made the ranks write a checkpoint a resubmission resumes from.
  std::smatch match;
  ASSERT_TRUE(std::regex_search(log, match, std::regex(R"(preemption signal received: checkpointing at step (\d+))")))
      << log;
  const fs::path last = newest_checkpoint(run);
  ASSERT_FALSE(last.empty()) << log;
  EXPECT_EQ(std::stoi(last.filename().string().substr(5)), std::stoi(match[1]));
}

TEST(TrainSbatch, FailuresEndTheJobWithTheirMessage) {
  REQUIRE_CLUSTER();
  const fs::path grid = cluster().work / "bad-grid.txt";
  write_text_file(grid, "# one task\noptimizer.lr\n");
  const fs::path short_grid = cluster().work / "short-grid.txt";
  write_text_file(short_grid, "optimizer.lr=0.001\n");

  struct Case {
    Job job;
    std::string exit_code;
    std::vector<std::string> messages;
  };
  std::vector<Case> cases;
  cases.push_back({submit("bad-key", kCpuRanks, ci_tiny("bad-key", 2, 0, " --set schedule.no_such_key=1")), "2:0",
                   {"unknown key", "no_such_key", "error: mgca train failed with exit status 2"}});
  cases.push_back({submit("no-job-file", kCpuRanks, "missing.toml"), "2:0",
                   {"error: job file 'missing.toml' not found (relative to the working directory " +
                    cluster().work.string() + ")"}});
  cases.push_back({submit("no-program", kCpuRanks, ci_tiny("no-program", 2, 0),
                          "MGCA_BIN=/nonexistent/mgca MGCA_ROOT=" + q(mgca::test::source_dir())),
                   "2:0",
                   {"error: mgca program '/nonexistent/mgca' not found or not executable"}});
  cases.push_back({submit("no-build", kCpuRanks, ci_tiny("no-build", 2, 0), "MGCA_ROOT=" + q(cluster().work)),
                   "2:0",
                   {"error: no mgca program under " + cluster().work.string() + "/build/gpu/src/cli/ or " +
                    cluster().work.string() + "/build/release/src/cli/"}});
  cases.push_back({submit("grid-not-key-value", std::string(kCpuRanks) + " --array=0", ci_tiny("grid", 2, 0),
                          job_environment() + " MGCA_GRID=" + q(grid)),
                   "2:0",
                   {"'optimizer.lr' is not key=value"}});
  cases.push_back({submit("grid-too-short", std::string(kCpuRanks) + " --array=1", ci_tiny("grid", 2, 0),
                          job_environment() + " MGCA_GRID=" + q(short_grid)),
                   "2:0",
                   {"has no line for array task 1"}});
  for (const Case& c : cases) {
    wait_for(c.job);
    const std::string log = log_of(c.job);
    const JobEnd end = job_end(c.job);
    EXPECT_EQ(end.state, "FAILED") << c.job.name << ":\n" << log;
    EXPECT_EQ(end.exit_code, c.exit_code) << c.job.name << ":\n" << log;
    EXPECT_EQ(end.restarts, 0) << c.job.name;
    for (const std::string& message : c.messages) {
      EXPECT_NE(log.find(message), std::string::npos) << c.job.name << ": no '" << message << "' in:\n" << log;
    }
  }

  // Run outside SLURM, the script says how to submit it.
  const CommandResult direct = run_command("env -u SLURM_JOB_ID bash " + q(train_sbatch()) + " job.toml");
  EXPECT_EQ(direct.exit_code, 2);
  EXPECT_NE(direct.output.find("not inside a SLURM job; submit with: sbatch slurm/train.sbatch JOB.toml"),
            std::string::npos) << direct.output;
}

// SLURM's GPU binding on the cluster's two placeholder GPUs. No CUDA can run
// on them, so the program is /bin/true: this checks only what each rank is
// given, through the placement listing the script prints before training.
TEST(TrainSbatch, GivesEachRankItsGpu) {
  REQUIRE_CLUSTER();
  const std::string environment = "MGCA_BIN=/bin/true MGCA_ROOT=" + q(mgca::test::source_dir());
  write_text_file(cluster().work / "job.toml", "name = \"placeholder\"\n");
  // The script's own request: --gpus-per-task=1, one task per GPU.
  const Job per_task = submit("gpus-per-task", "--ntasks-per-node=2 --cpus-per-task=1", "job.toml", environment);

  // The documented alternative: --gres=gpu:N instead of --gpus-per-task.
  std::string script = read_text_file(train_sbatch());
  const std::string per_task_line = "\n#SBATCH --gpus-per-task=1\n";
  const std::string gres_line = "\n##SBATCH --gres=gpu:4\n";
  ASSERT_NE(script.find(per_task_line), std::string::npos);
  ASSERT_NE(script.find(gres_line), std::string::npos);
  script.replace(script.find(per_task_line), per_task_line.size(), "\n##SBATCH --gpus-per-task=1\n");
  script.replace(script.find(gres_line), gres_line.size(), "\n#SBATCH --gres=gpu:2\n");
  const fs::path gres_script = cluster().work / "train-gres.sbatch";
  write_text_file(gres_script, script);
  const Job gres = submit("gres", "--ntasks-per-node=2 --cpus-per-task=1", "job.toml", environment, gres_script);

  wait_for(per_task);
  wait_for(gres);
  const std::string per_task_log = log_of(per_task);
  EXPECT_EQ(job_end(per_task).state, "COMPLETED") << per_task_log;
  EXPECT_NE(per_task_log.find("1 CPUs and 1 GPUs per task"), std::string::npos) << per_task_log;
  EXPECT_TRUE(std::regex_search(per_task_log, std::regex(R"(rank 0: host \S+ local rank 0 CUDA_VISIBLE_DEVICES=0\n)")))
      << per_task_log;
  EXPECT_TRUE(std::regex_search(per_task_log, std::regex(R"(rank 1: host \S+ local rank 1 CUDA_VISIBLE_DEVICES=1\n)")))
      << per_task_log;
  const std::string gres_log = log_of(gres);
  EXPECT_EQ(job_end(gres).state, "COMPLETED") << gres_log;
  EXPECT_TRUE(std::regex_search(gres_log, std::regex(R"(rank 0: host \S+ local rank 0 CUDA_VISIBLE_DEVICES=0,1\n)")))
      << gres_log;
  EXPECT_TRUE(std::regex_search(gres_log, std::regex(R"(rank 1: host \S+ local rank 1 CUDA_VISIBLE_DEVICES=0,1\n)")))
      << gres_log;
}

// ---- slurm/sweep -------------------------------------------------------------------

std::vector<std::vector<std::string>> read_csv(const fs::path& path) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(read_text_file(path));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::string cell;
    bool quoted = false;
    for (char c : line) {
      if (c == '"') {
        quoted = !quoted;
      } else if (c == ',' && !quoted) {
        cells.push_back(cell);
        cell.clear();
      } else if (c != '\r') {
        cell += c;
      }
    }
    cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

// The median of samples_per_s after the first fifth of the lines: what the
// table should hold, computed here from the run's own metrics.
double median_throughput(const fs::path& run) {
  const auto metrics = read_metrics(run);
  std::vector<double> values;
  for (size_t i = metrics.size() > 2 ? metrics.size() / 5 : 0; i < metrics.size(); ++i) {
    values.push_back(metrics[i].at("samples_per_s").get<double>());
  }
  MGCA_CHECK(!values.empty(), "no metrics in {}", run.string());
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::string sweep_command(const std::string& arguments) {
  return "cd " + q(cluster().work) + " && env " + job_environment() + " " + q(sweep_program()) + " " + arguments;
}

TEST(Sweep, WeakScalingOverTwoPointsGivesTheTableAndPlot) {
  REQUIRE_CLUSTER();
  const fs::path out = cluster().work / "weak";
  const std::string job = q(mgca::test::source_dir() / "jobs" / "ci-tiny.toml") + " --set data.train=" +
                          q(cluster().dataset) + " --set text.vocab=" + q(vocab()) +
                          " --set schedule.max_steps=6 --set checkpoint.every_steps=0";
  const CommandResult sweep = run_command(sweep_command(
      "scaling --mode weak --nodes 1 --gpus-per-node 1,2 --batch-per-gpu 2 --out " + q(out) +
      " --sbatch='--gpus-per-task=0 --cpus-per-task=1' --wait " + job));
  ASSERT_EQ(sweep.exit_code, 0) << sweep.output;

  const auto rows = read_csv(out / "scaling.csv");
  ASSERT_EQ(rows.size(), 3u) << read_text_file(out / "scaling.csv");
  const std::vector<std::string> header = {"nodes", "GPUs/node", "ranks", "batch/GPU", "global batch", "samples/s",
                                           "samples/s per rank", "speedup", "ideal", "efficiency %", "steps",
                                           "job", "status"};
  ASSERT_EQ(rows[0], header);
  std::vector<double> rates;
  for (int point = 1; point <= 2; ++point) {
    const auto& row = rows[point];
    const std::string name = "weak-n1g" + std::to_string(point);
    SCOPED_TRACE(name);
    EXPECT_EQ(row[2], std::to_string(point));  // ranks
    EXPECT_EQ(row[3], "2");                      // batch per GPU, fixed
    EXPECT_EQ(row[4], std::to_string(2 * point));
    EXPECT_EQ(row[12], "ok");
    // The table rounds to 0.1 samples/s; the ratios below use the exact medians.
    const double rate = median_throughput(out / "runs" / name);
    EXPECT_NEAR(std::stod(row[5]), rate, 0.051);
    rates.push_back(rate);
    const std::string log = read_text_file(out / "logs" / (name + "-" + row[11] + ".log"));
    EXPECT_NE(log.find(name + ": " + std::to_string(point) + " ranks × batch 2 × accumulate 1"), std::string::npos)
        << log;
  }
  EXPECT_EQ(rows[1][7], "1.00");
  EXPECT_EQ(rows[1][9], "100.0");
  EXPECT_NEAR(std::stod(rows[2][7]), rates[1] / rates[0], 0.0051);
  EXPECT_NEAR(std::stod(rows[2][9]), 100.0 * rates[1] / rates[0] / 2.0, 0.051);

  const std::string table = read_text_file(out / "scaling.md");
  EXPECT_NE(table.find("| nodes | GPUs/node | ranks |"), std::string::npos) << table;
  EXPECT_NE(sweep.output.find("| nodes | GPUs/node | ranks |"), std::string::npos) << sweep.output;
  const std::string png = read_text_file(out / "scaling.png");
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

TEST(Sweep, GridRunsOneArrayTaskPerLine) {
  REQUIRE_CLUSTER();
  const fs::path out = cluster().work / "grid";
  const std::string job = q(mgca::test::source_dir() / "jobs" / "ci-tiny.toml") + " --set data.train=" +
                          q(cluster().dataset) + " --set text.vocab=" + q(vocab()) +
                          " --set schedule.max_steps=2 --set checkpoint.every_steps=0";
  const CommandResult sweep = run_command(sweep_command(
      "grid --axis optimizer.lr=0.001,0.002 --out " + q(out) +
      " --sbatch='--ntasks-per-node=1 --gpus-per-task=0 --cpus-per-task=1' --wait " + job));
  ASSERT_EQ(sweep.exit_code, 0) << sweep.output;
  EXPECT_EQ(read_text_file(out / "grid.txt"), "optimizer.lr=0.001\noptimizer.lr=0.002\n");
  const auto rows = read_csv(out / "grid.csv");
  ASSERT_EQ(rows.size(), 3u) << read_text_file(out / "grid.csv");
  for (int task = 0; task < 2; ++task) {
    const auto& row = rows[task + 1];
    EXPECT_EQ(row[0], std::to_string(task));
    EXPECT_EQ(row[1], task == 0 ? "optimizer.lr=0.001" : "optimizer.lr=0.002");
    EXPECT_EQ(row[2], "2");
    EXPECT_EQ(row[5], "ok");
    const auto metrics = read_metrics(out / "runs" / ("grid-" + std::to_string(task)));
    ASSERT_EQ(metrics.size(), 2u);
    std::ostringstream loss;
    loss << std::fixed << std::setprecision(4) << metrics.back().at("loss").get<double>();
    EXPECT_EQ(row[3], loss.str());
    const std::string config = read_text_file(out / "runs" / ("grid-" + std::to_string(task)) / "config.toml");
    EXPECT_TRUE(std::regex_search(config, std::regex(task == 0 ? R"(\blr = 0\.001\b)" : R"(\blr = 0\.002\b)")))
        << config;
  }
}

TEST(Sweep, RejectsBadInputWithAMessage) {
  REQUIRE_CLUSTER();
  const std::string job = q(mgca::test::source_dir() / "jobs" / "ci-tiny.toml");
  const fs::path used = cluster().work / "used-sweep";
  fs::create_directories(used);
  write_text_file(used / "sweep.json", "{}");
  const fs::path bad_grid = cluster().work / "grid-bad.txt";
  write_text_file(bad_grid, "optimizer.lr=1e-3\n\n# comment\nschedule.max_steps 4\n");
  const fs::path empty_grid = cluster().work / "grid-empty.txt";
  write_text_file(empty_grid, "# nothing\n\n");
  const fs::path fresh = cluster().work / "never-written";
  struct Case {
    std::string arguments;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"scaling --mode strong --gpus-per-node 1,2,4 --global-batch 6 --out " + q(fresh) + " --dry-run " + job,
       "--global-batch 6 does not split evenly over 4 ranks (1 nodes x 4 GPUs)"},
      {"scaling --mode weak --gpus-per-node 1 --global-batch 8 --out " + q(fresh) + " --dry-run " + job,
       "--mode weak takes --batch-per-gpu B"},
      {"scaling --mode weak --gpus-per-node 1,x --batch-per-gpu 2 --out " + q(fresh) + " --dry-run " + job,
       "--gpus-per-node: '1,x' is not a comma-separated list of integers"},
      {"scaling --mode weak --gpus-per-node 1 --batch-per-gpu 2 --out " + q(fresh) + " --dry-run " + job +
           " --set data.batch_size=8",
       "--set data.batch_size=8: the scaling sweep sets 'data.batch_size' itself"},
      {"scaling --mode weak --gpus-per-node 1 --batch-per-gpu 2 --out " + q(fresh) + " --dry-run " + job + " extra",
       "unexpected argument 'extra' after the job file"},
      {"scaling --mode weak --gpus-per-node 1 --batch-per-gpu 2 --out " + q(fresh) + " --dry-run missing.toml",
       "job file 'missing.toml' not found"},
      {"scaling --mode weak --gpus-per-node 1 --batch-per-gpu 2 --out " + q(used) + " --dry-run " + job,
       "already holds a sweep (sweep.json); choose a new --out or pass --force"},
      {"grid --grid-file " + q(bad_grid) + " --out " + q(fresh) + " --dry-run " + job,
       bad_grid.string() + ":4: 'schedule.max_steps' is not key=value"},
      {"grid --grid-file " + q(empty_grid) + " --out " + q(fresh) + " --dry-run " + job, "no grid lines"},
      {"grid --out " + q(fresh) + " --dry-run " + job, "give either --grid-file FILE or one or more --axis"},
      {"collect " + q(fresh), "holds no sweep.json (not a sweep folder)"},
  };
  for (const Case& c : cases) {
    const CommandResult result = run_command(sweep_command(c.arguments));
    EXPECT_EQ(result.exit_code, 2) << c.arguments << "\n" << result.output;
    EXPECT_EQ(result.output.rfind("slurm/sweep: error: ", 0), 0u) << c.arguments << "\n" << result.output;
    EXPECT_NE(result.output.find(c.message), std::string::npos) << c.arguments << "\n" << result.output;
  }
  EXPECT_FALSE(fs::exists(fresh)) << "a rejected sweep created its folder";
}

}  // namespace
