// The trainer under mpirun -np 1, 2, 4 with a small contrastive task:
// W ranks × b equal one rank × W·b (losses per step and final weights),
// interrupted-and-resumed runs continue bit for bit, a signal on one rank
// checkpoints every rank at the same step, a NaN loss stops every rank
// naming the step and the loss part, and the MGCA task keeps its prototypes
// frozen during the first epoch.
#include <gtest/gtest.h>
#include <mpi.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "mgca/comm/communicator.h"
#include "mgca/data/synth_dataset.h"
#include "mgca/train/checkpoint.h"
#include "mgca/train/run.h"
#include "mgca/comm/collective_error.h"
#include "mgca/train/preemption.h"
#include "mgca/train/trainer.h"
#include "support/tensor_checks.h"
#include "support/test_support.h"
#include "toy_task.h"
#include "support/world.h"

namespace fs = std::filesystem;

namespace mgca::train {
namespace {

using test::world;
using toy::ToyOptions;
using toy::ToyTask;

// A folder every rank shares (rank 0 creates and removes it).
class SharedDir {
 public:
  SharedDir() {
    if (world()->rank() == 0) dir_ = std::make_unique<mgca::test::TempDir>("mgca-trainer");
    path_ = world()->broadcast_string(world()->rank() == 0 ? dir_->path().string() : "", 0);
  }
  ~SharedDir() { world()->barrier(); }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::unique_ptr<mgca::test::TempDir> dir_;
  fs::path path_;
};

Config toy_config(const fs::path& out, const std::string& name, int64_t steps) {
  Config c;
  c.name = name;
  c.output_dir = out.string();
  c.data.train = "unused";
  c.optimizer.lr = 3e-3;
  c.optimizer.weight_decay = 0.05;
  c.optimizer.grad_clip_norm = 1.0;
  c.schedule.max_steps = steps;
  c.schedule.warmup_fraction = 0.25;
  c.schedule.min_lr = 1e-5;
  c.checkpoint.every_steps = 0;
  c.checkpoint.keep = 5;
  c.checkpoint.resume = train::ResumeSetting{};
  c.logging.progress_interval_s = 1e9;
  return c;
}

RunResult train(const Config& config, ToyOptions options, std::shared_ptr<comm::Communicator> comm,
                uint64_t init_seed = 11) {
  torch::manual_seed(init_seed);  // the initial weights (rank 0's are broadcast)
  auto task = std::make_unique<ToyTask>(options, comm);
  Trainer trainer(config, comm, std::move(task), torch::kCPU);
  return trainer.run();
}

std::vector<nlohmann::json> read_metrics(const fs::path& run_dir) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(run_dir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

std::map<std::string, torch::Tensor> final_weights(const Config& config) {
  return load_model_tensors(newest_checkpoint(config.checkpoint_dir())->path);
}

TEST(Trainer, WRanksEqualOneRankWithTheGlobalBatch) {
  SharedDir dir;
  auto comm = world();
  const int w = comm->size();
  const int64_t b = 2;
  // 20 steps over 48 samples: several epochs, so the prototype freeze ends and epochs reshuffle.
  const Config distributed = toy_config(dir / "out", "distributed", 20);
  ToyOptions options;
  options.batch_size = b;
  const RunResult result = train(distributed, options, comm);
  EXPECT_EQ(result.status, RunStatus::Completed);
  EXPECT_EQ(result.step, 20);

  // One rank with the whole global batch (each rank runs it alone, in its own folder).
  const Config single = toy_config(dir / ("single-" + std::to_string(comm->rank())), "single", 20);
  options.batch_size = b * w;
  train(single, options, comm::Communicator::single());

  if (comm->rank() == 0) {
    const auto a = read_metrics(distributed.run_dir());
    const auto s = read_metrics(single.run_dir());
    ASSERT_EQ(a.size(), 20u);
    ASSERT_EQ(s.size(), 20u);
    for (size_t i = 0; i < a.size(); ++i) {
      for (const char* key : {"loss", "loss_ita", "loss_proto", "lr", "grad_norm"}) {
        const double x = a[i][key].get<double>(), y = s[i][key].get<double>();
        EXPECT_NEAR(x, y, 1e-5 * std::abs(y) + 1e-7) << "step " << i + 1 << " " << key;
      }
    }
  }
  const auto weights = final_weights(distributed);
  const auto reference = final_weights(single);
  ASSERT_EQ(weights.size(), reference.size());
  for (const auto& [name, tensor] : reference) {
    EXPECT_TRUE(mgca::test::AllClose(weights.at(name), tensor, 1e-5, 1e-6)) << name;
  }
  // The layer no loss reaches kept its initial weights (no gradient on any
  // rank: no update and no weight decay), through the frozen epoch and after.
  torch::manual_seed(11);
  ToyTask fresh(options, comm::Communicator::single());
  for (const char* name : {"unused.weight", "unused.bias"}) {
    EXPECT_TRUE(torch::equal(weights.at(name), fresh.module().named_parameters()[name])) << name;
  }
}

TEST(Trainer, AccumulationSyncsOnceAndMatchesOneRank) {
  SharedDir dir;
  auto comm = world();
  const int w = comm->size();
  ToyOptions options;
  options.batch_size = 2;
  options.accumulate = 2;
  Config overlapped = toy_config(dir / "out", "overlapped", 8);
  overlapped.optimizer.accumulate = 2;
  train(overlapped, options, comm);
  Config plain = overlapped;
  plain.name = "plain";
  plain.comm.gradients.overlap = false;  // gradients averaged after backward instead of from hooks
  train(plain, options, comm);
  Config single = toy_config(dir / ("single-" + std::to_string(comm->rank())), "single", 8);
  single.optimizer.accumulate = 2;
  options.batch_size = 2 * w;
  train(single, options, comm::Communicator::single());

  const auto a = final_weights(overlapped), b = final_weights(plain), c = final_weights(single);
  for (const auto& [name, tensor] : c) {
    EXPECT_TRUE(torch::equal(a.at(name), b.at(name))) << name << ": the two sync paths differ";
    EXPECT_TRUE(mgca::test::AllClose(a.at(name), tensor, 1e-5, 1e-6)) << name;
  }
  if (comm->rank() == 0) {
    const auto ma = read_metrics(overlapped.run_dir()), mc = read_metrics(single.run_dir());
    ASSERT_EQ(ma.size(), 8u);
    for (size_t i = 0; i < ma.size(); ++i) {
      EXPECT_NEAR(ma[i]["loss"].get<double>(), mc[i]["loss"].get<double>(), 1e-5 * std::abs(mc[i]["loss"].get<double>()));
    }
  }
}

bool same_bytes(const torch::Tensor& a, const torch::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.numel() * a.element_size()) == 0;
}

TEST(Trainer, InterruptedAndResumedRunIsBitIdentical) {
  SharedDir dir;
  auto comm = world();
  ToyOptions options;
  const Config straight = toy_config(dir / "out", "straight", 12);
  EXPECT_EQ(train(straight, options, comm).status, RunStatus::Completed);

  Config halves = toy_config(dir / "out", "halves", 12);
  halves.schedule.stop_after_steps = 6;
  const RunResult first = train(halves, options, comm);
  EXPECT_EQ(first.status, RunStatus::Stopped);
  EXPECT_EQ(first.step, 6);
  halves.schedule.stop_after_steps = 0;
  // Different initial weights: everything must come from the checkpoint.
  const RunResult second = train(halves, options, comm, /*init_seed=*/12345);
  EXPECT_EQ(second.status, RunStatus::Completed);
  EXPECT_EQ(second.step, 12);

  const auto a = final_weights(straight), b = final_weights(halves);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, tensor] : a) EXPECT_TRUE(same_bytes(tensor, b.at(name))) << name;
  if (comm->rank() == 0) {
    EXPECT_EQ(mgca::test::read_text_file(newest_checkpoint(straight.checkpoint_dir())->path / "model.safetensors"),
              mgca::test::read_text_file(newest_checkpoint(halves.checkpoint_dir())->path / "model.safetensors"));
    const auto ma = read_metrics(straight.run_dir()), mb = read_metrics(halves.run_dir());
    ASSERT_EQ(ma.size(), 12u);
    ASSERT_EQ(mb.size(), 12u);
    for (size_t i = 0; i < ma.size(); ++i) {
      EXPECT_EQ(ma[i]["loss"].get<double>(), mb[i]["loss"].get<double>()) << "step " << i + 1;
      EXPECT_EQ(ma[i]["grad_norm"].get<double>(), mb[i]["grad_norm"].get<double>()) << "step " << i + 1;
    }
  }
}

TEST(Trainer, SignalOnOneRankCheckpointsEveryRankAndResumesExactly) {
  SharedDir dir;
  auto comm = world();
  ToyOptions options;
  const Config straight = toy_config(dir / "out", "straight", 10);
  train(straight, options, comm);

  const Config preempted = toy_config(dir / "out", "preempted", 10);
  ToyOptions signalled = options;
  signalled.signal_rank = comm->size() - 1;
  signalled.signal_at_batch = 4;  // while loading step 5's batch
  reset_preemption();
  const RunResult stop = train(preempted, signalled, comm);
  reset_preemption();
  EXPECT_EQ(stop.status, RunStatus::Preempted);
  EXPECT_EQ(stop.step, 5);  // agreed at the next step boundary
  EXPECT_EQ(stop.signal, comm->rank() == comm->size() - 1 ? SIGUSR1 : 0);
  EXPECT_TRUE(is_complete_checkpoint(stop.checkpoint));
  const int64_t max_step = static_cast<int64_t>(comm->all_reduce_scalar(static_cast<double>(stop.step), comm::ReduceOp::Max));
  EXPECT_EQ(max_step, stop.step) << "ranks stopped at different steps";

  const RunResult resumed = train(preempted, options, comm, 999);
  EXPECT_EQ(resumed.status, RunStatus::Completed);
  const auto a = final_weights(straight), b = final_weights(preempted);
  for (const auto& [name, tensor] : a) EXPECT_TRUE(same_bytes(tensor, b.at(name))) << name;
}

TEST(Trainer, NanLossStopsEveryRankNamingStepAndPart) {
  SharedDir dir;
  auto comm = world();
  const Config config = toy_config(dir / "out", "nan", 10);
  ToyOptions options;
  options.nan_at_step = 3;
  try {
    train(config, options, comm);
    ADD_FAILURE() << "expected an error";
  } catch (const comm::CollectiveError& e) {
    EXPECT_EQ(e.echo(), comm->rank() != 0);
    const int64_t epoch = 3 / (48 / (4 * comm->size()));
    EXPECT_NE(e.message().find(fmt::format("step 4 (epoch {}): loss part 'loss_proto' is nan, loss part 'loss' is nan",
                                           epoch)),
              std::string::npos)
        << e.message();
  }
  // The checkpoint written before (none: every_steps 0) is untouched; nothing half-written remains.
  EXPECT_FALSE(newest_checkpoint(config.checkpoint_dir()).has_value());
}

// optimizer.spike_zscore: a loss 50× the others is detected once the window
// is full, its update is skipped (Adam's step count shows it), metrics.jsonl
// counts it, and a run interrupted before the spike resumes the detector's
// window bit for bit. Off (the default), the same spike is trained on.
TEST(Trainer, LossSpikeSkipsTheUpdateCountsItAndResumesExactly) {
  SharedDir dir;
  auto comm = world();
  ToyOptions options;
  options.spike_at_step = 19;  // step 20; steps 1-16 fill the window, scores start at step 17
  auto spiky = [&](const std::string& name) {
    Config c = toy_config(dir / "out", name, 24);
    c.optimizer.spike_zscore = 3.0;  // at most sqrt(15) = 3.87 in a window of 16
    c.optimizer.spike_window = 16;
    return c;
  };
  const Config straight = spiky("spike-straight");
  EXPECT_EQ(train(straight, options, comm).status, RunStatus::Completed);
  Config halves = spiky("spike-halves");
  halves.schedule.stop_after_steps = 18;
  EXPECT_EQ(train(halves, options, comm).status, RunStatus::Stopped);
  halves.schedule.stop_after_steps = 0;
  EXPECT_EQ(train(halves, options, comm, /*init_seed=*/777).status, RunStatus::Completed);
  const Config off = toy_config(dir / "out", "spike-off", 24);
  EXPECT_EQ(train(off, options, comm).status, RunStatus::Completed);

  const auto optimizer_steps = [](const Config& c) {
    return load_optimizer_tensors(newest_checkpoint(c.checkpoint_dir())->path).at("step/img1.weight").item<int64_t>();
  };
  EXPECT_EQ(optimizer_steps(straight), 23);  // 24 steps, one update skipped
  EXPECT_EQ(optimizer_steps(off), 24);
  const auto a = final_weights(straight), b = final_weights(halves);
  for (const auto& [name, tensor] : a) EXPECT_TRUE(same_bytes(tensor, b.at(name))) << name;

  if (comm->rank() == 0) {
    const auto m = read_metrics(straight.run_dir()), mh = read_metrics(halves.run_dir());
    ASSERT_EQ(m.size(), 24u);
    ASSERT_EQ(mh.size(), 24u);
    for (size_t i = 0; i < m.size(); ++i) {
      const int64_t step = static_cast<int64_t>(i) + 1;
      EXPECT_EQ(m[i]["skipped_updates"].get<int64_t>(), step >= 20 ? 1 : 0) << "step " << step;
      if (step <= 16) {
        EXPECT_TRUE(m[i]["loss_zscore"].is_null()) << "step " << step << ": the window is still filling";
      } else if (step == 20) {
        EXPECT_GT(m[i]["loss_zscore"].get<double>(), 3.0);
      } else {
        EXPECT_LT(m[i]["loss_zscore"].get<double>(), 3.0) << "step " << step;
      }
      EXPECT_EQ(m[i]["loss_zscore"], mh[i]["loss_zscore"]) << "step " << step;
      EXPECT_EQ(m[i]["loss"], mh[i]["loss"]) << "step " << step;
    }
    const auto mo = read_metrics(off.run_dir());
    EXPECT_FALSE(mo.back().contains("skipped_updates"));
    EXPECT_FALSE(mo.back().contains("loss_zscore"));
  }
}

// On the path `mgca train` runs: make_task's MgcaTask (its after_backward
// drops the prototype gradient) with the loader over a synthetic dataset,
// the tiny CI job. 8 samples per step (b = 8/W), 2 steps per epoch: the
// prototypes are only re-normalized during epoch 0 (AdamW skips them, weight
// decay included) while every other trained weight moves; the run resumed at
// the epoch boundary updates them in epoch 1.
TEST(Trainer, MgcaTaskKeepsThePrototypesFrozenDuringTheFirstEpoch) {
  SharedDir dir;
  auto comm = world();
  data::SynthDatasetOptions synth;
  synth.out = dir / "synth";
  synth.count = 16;
  synth.sample.image_size = 72;
  synth.sample.seed = 3;
  synth.threads = 1;
  data::write_synth_dataset(*comm, synth);
  const int64_t b = 8 / comm->size();
  auto job = [&](int64_t steps) {
    return load_config_collective(
        mgca::test::source_dir() / "jobs" / "ci-tiny.toml",
        {"data.train=" + (dir / "synth").string(),
         "text.vocab=" + (mgca::test::shared_data_dir() / "vocab" / "bert-base-cased-vocab.txt").string(),
         "output_dir=" + (dir / "out").string(), "name=freeze", "data.batch_size=" + std::to_string(b),
         "data.workers=1", "schedule.max_steps=3", "schedule.stop_after_steps=" + std::to_string(steps),
         "schedule.warmup_fraction=0", "checkpoint.every_steps=0", "logging.progress_interval_s=1000"},
        *comm);
  };
  auto weights = [](Task& task) {
    std::map<std::string, torch::Tensor> out;
    for (const auto& item : task.module().named_parameters()) out[item.key()] = item.value().detach().clone();
    return out;
  };
  const Config epoch0 = job(2);
  ASSERT_EQ(epoch0.objectives.freeze_prototypes_epochs, 1);
  torch::manual_seed(static_cast<uint64_t>(epoch0.seed));
  Trainer first(epoch0, comm, make_task(epoch0, comm, torch::kCPU), torch::kCPU);
  ASSERT_EQ(first.steps_per_epoch(), 2);
  auto before = weights(first.task());
  auto prototypes = before.at("prototypes.weight");
  comm->broadcast(prototypes, 0);  // the trainer starts from rank 0's weights
  prototypes = prototypes / prototypes.norm(2, 1, true);
  EXPECT_EQ(first.run().step, 2);
  auto after = weights(first.task());
  EXPECT_TRUE(mgca::test::AllClose(after.at("prototypes.weight"), prototypes, 1e-6, 1e-7))
      << "the prototypes moved during the frozen epoch";
  int moved = 0;
  for (const auto& [name, value] : after) moved += name != "prototypes.weight" && !value.equal(before.at(name));
  EXPECT_GT(moved, 10) << "the other weights did not train";

  const Config epoch1 = job(3);
  Trainer second(epoch1, comm, make_task(epoch1, comm, torch::kCPU), torch::kCPU);
  EXPECT_EQ(second.run().step, 3);
  const auto last = weights(second.task()).at("prototypes.weight");
  EXPECT_GT((last - prototypes).abs().max().item<double>(), 1e-6) << "the prototypes stayed frozen in epoch 1";
}

}  // namespace
}  // namespace mgca::train
