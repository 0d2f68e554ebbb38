// The distributed contract in float32 with dropout on (docs/contract.md §2.6):
// the demo job (jobs/cpu-demo.toml) with model.dropout = 0.1, ViT and ResNet,
// global batch 32 as W ranks × 32/W against one rank × 32 (rank 0 runs the
// reference), in both reduction modes.
// runtime.batch_invariant = true: step 1's gradients (each tensor relative to
// its largest entry), every step's losses and gradient norm, and every
// weight after 10 steps (the same measure) agree to 1e-5.
// The default (fast) mode: step 1's gradients agree to 1e-4 of each tensor's
// largest entry; the first 2 trainer steps' losses and gradient norms to
// 1e-5. Later steps drift (float32 rounding that Adam and training amplify):
// with ViT steps 3–10 are held to 1e-2 and the weights after 10 steps to 1e-3
// of the model's norm; with ResNet the drift grows faster (measured ~1e-1 by
// step 5) and is only printed, as are all the measured differences.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "mgca/comm/communicator.h"
#include "mgca/comm/exact_grad.h"
#include "mgca/data/synth_dataset.h"
#include "mgca/train/checkpoint.h"
#include "mgca/train/checkpoint_files.h"
#include "mgca/train/config.h"
#include "mgca/train/run.h"
#include "mgca/train/trainer.h"
#include "support/tensor_checks.h"
#include "support/test_support.h"
#include "support/world.h"

namespace fs = std::filesystem;

namespace mgca::train {
namespace {

using test::world;

constexpr int64_t kGlobalBatch = 32;
constexpr int64_t kSteps = 10;
constexpr int64_t kExactSteps = 2;     // steps held to kTolerance
constexpr double kTolerance = 1e-5;    // losses and gradient norms of the first steps
constexpr double kGradients = 1e-4;    // step 1's gradients, relative to each tensor's largest entry
constexpr double kDrift = 1e-2;        // losses and gradient norms of the later steps
constexpr double kWeights = 1e-3;      // ‖Δw‖ / ‖w‖ over the whole model after kSteps
constexpr double kInvariant = 1e-5;    // runtime.batch_invariant: everything, every step

// |a − b| / max|b| over a tensor (relative to its scale: near-zero entries
// of a tensor are compared against its largest one).
double scaled_difference(const torch::Tensor& a, const torch::Tensor& b) {
  const auto x = a.to(torch::kFloat64), y = b.to(torch::kFloat64);
  const double scale = y.abs().max().item<double>();
  return scale == 0 ? (x - y).abs().max().item<double>() : ((x - y).abs().max().item<double>() / scale);
}

struct Variant {
  const char* encoder;
  bool batch_invariant;
};

class Fp32Contract : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    comm_ = world();
    if (comm_->rank() == 0) temp_ = std::make_unique<test::TempDir>("mgca-fp32-contract");
    dir_ = comm_->broadcast_string(comm_->rank() == 0 ? temp_->path().string() : "", 0);
    data::SynthDatasetOptions synth;
    synth.out = dir_ / "data";
    synth.count = 96;  // 3 global batches per epoch: 10 steps cross epochs and the prototype freeze
    synth.sample.image_size = 72;
    synth.sample.seed = 3;
    synth.threads = 1;
    data::write_synth_dataset(*comm_, synth);
  }
  void TearDown() override { comm_->barrier(); }

  Config config(const std::string& name, int64_t batch, const std::string& out) const {
    std::vector<std::string> o = {"name=" + name, "output_dir=" + out, "data.train=" + (dir_ / "data").string(),
                        "text.vocab=" + (test::shared_data_dir() / "vocab/bert-base-cased-vocab.txt").string(),
                        "model.image_encoder=" + std::string(GetParam().encoder), "model.dropout=0.1", "model.resnet_input_size=0",
                        "data.batch_size=" + std::to_string(batch), "schedule.max_steps=" + std::to_string(kSteps),
                        "checkpoint.every_steps=0", "logging.progress_interval_s=1e9", "runtime.threads=1",
                        std::string("runtime.batch_invariant=") + (GetParam().batch_invariant ? "true" : "false")};
    return load_config(test::source_dir() / "jobs/cpu-demo.toml", o);
  }

  std::unique_ptr<Task> task(const Config& c, std::shared_ptr<comm::Communicator> comm) const {
    torch::manual_seed(static_cast<uint64_t>(c.seed));  // the same initial weights everywhere
    return make_task(c, std::move(comm), torch::kCPU);
  }

  // The gradients of step 1, reduced over the ranks as the trainer does:
  // averaged, or under runtime.batch_invariant the float64 shadows summed and
  // rounded once.
  static std::map<std::string, torch::Tensor> first_gradients(Task& t, comm::Communicator& comm) {
    t.seek(0, 0);
    t.before_step(0);
    t.next_batch();
    t.forward().total.backward();
    std::map<std::string, torch::Tensor> grads;
    if (auto* shadows = t.grad_shadows()) {
      for (const auto& [name, shadow] : shadows->shadows()) {
        auto g = shadow.grad().defined() ? shadow.grad().clone() : torch::zeros_like(shadow);
        comm.all_reduce(g, comm::ReduceOp::Sum);
        grads[name] = g.to(torch::kFloat32);
      }
      return grads;
    }
    for (const auto& item : t.module().named_parameters()) {
      if (!item.value().grad().defined()) continue;
      auto g = item.value().grad().clone();
      comm.all_reduce(g, comm::ReduceOp::Avg);
      grads[item.key()] = g;
    }
    return grads;
  }

  std::shared_ptr<comm::Communicator> comm_;
  std::unique_ptr<test::TempDir> temp_;
  fs::path dir_;
};

std::vector<nlohmann::json> metric_lines(const fs::path& run_dir) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

TEST_P(Fp32Contract, WRanksEqualOneRankWithDropout) {
  const int w = comm_->size();
  const char* encoder = GetParam().encoder;
  const bool vit = std::string(encoder) == "vit_tiny";
  const bool invariant = GetParam().batch_invariant;
  ASSERT_EQ(kGlobalBatch % w, 0);
  const Config distributed = config("distributed", kGlobalBatch / w, (dir_ / "out").string());
  const Config single = config("single", kGlobalBatch, (dir_ / "out").string());
  ASSERT_EQ(single.model.dropout, 0.1);
  ASSERT_EQ(single.runtime.dtype, ComputeDtype::Float32);

  // Step 1's gradients, parameter by parameter.
  const auto grads = first_gradients(*task(distributed, comm_), *comm_);
  if (comm_->rank() == 0) {
    auto one = comm::Communicator::single();
    const auto reference = first_gradients(*task(single, one), *one);
    ASSERT_EQ(grads.size(), reference.size());
    std::vector<std::pair<double, std::string>> differences;  // the diagnostic: which tensors differ most
    for (const auto& [name, g] : reference) {
      const double d = scaled_difference(grads.at(name), g);
      differences.emplace_back(d, name);
      EXPECT_LE(d, invariant ? kInvariant : kGradients) << name;
    }
    std::sort(differences.rbegin(), differences.rend());
    std::string largest;
    for (size_t i = 0; i < std::min<size_t>(3, differences.size()); ++i) {
      largest += " " + differences[i].second + " " + std::to_string(differences[i].first);
    }
    std::printf("[%s%s W=%d] step 1 gradients: max relative difference %.2e; largest:%s\n", encoder,
                invariant ? " invariant" : "", w, differences.empty() ? 0.0 : differences[0].first, largest.c_str());
  }
  comm_->barrier();

  // 10 steps through the trainer.
  {
    Trainer trainer(distributed, comm_, task(distributed, comm_), torch::kCPU);
    EXPECT_EQ(trainer.run().step, kSteps);
  }
  if (comm_->rank() == 0) {
    auto one = comm::Communicator::single();
    Config reference = single;
    Trainer trainer(reference, one, task(reference, one), torch::kCPU);
    EXPECT_EQ(trainer.run().step, kSteps);

    const auto a = metric_lines(distributed.run_dir()), s = metric_lines(single.run_dir());
    ASSERT_EQ(a.size(), static_cast<size_t>(kSteps));
    ASSERT_EQ(s.size(), static_cast<size_t>(kSteps));
    for (size_t i = 0; i < a.size(); ++i) {
      double worst = 0;
      for (const char* key : {"loss", "loss_ita", "loss_cta", "loss_cpa", "grad_norm"}) {
        const double x = a[i][key].get<double>(), y = s[i][key].get<double>();
        worst = std::max(worst, std::abs(x - y) / std::abs(y));
        if (invariant) {
          EXPECT_NEAR(x, y, kInvariant * std::abs(y)) << "step " << i + 1 << " " << key;
        } else if (static_cast<int64_t>(i) < kExactSteps) {
          EXPECT_NEAR(x, y, kTolerance * std::abs(y)) << "step " << i + 1 << " " << key;
        } else if (vit) {
          EXPECT_NEAR(x, y, kDrift * std::abs(y)) << "step " << i + 1 << " " << key;
        }
      }
      std::printf("[%s%s W=%d] step %zu: losses and gradient norm: max relative difference %.2e\n", encoder,
                  invariant ? " invariant" : "", w, i + 1, worst);
    }
    const auto weights = load_model_tensors(newest_checkpoint(distributed.checkpoint_dir())->path);
    const auto expected = load_model_tensors(newest_checkpoint(single.checkpoint_dir())->path);
    ASSERT_EQ(weights.size(), expected.size());
    double diff2 = 0, norm2 = 0, worst = 0;
    std::string worst_name;
    for (const auto& [key, tensor] : expected) {
      if (!tensor.is_floating_point()) continue;
      const auto delta = weights.at(key).to(torch::kFloat64) - tensor.to(torch::kFloat64);
      diff2 += delta.square().sum().item<double>();
      norm2 += tensor.to(torch::kFloat64).square().sum().item<double>();
      const double d = scaled_difference(weights.at(key), tensor);
      if (invariant) {
        EXPECT_LE(d, kInvariant) << key;
      }
      if (d > worst) {
        worst = d;
        worst_name = key;
      }
    }
    const double relative = std::sqrt(diff2 / norm2);
    if (vit && !invariant) {
      EXPECT_LE(relative, kWeights);
    }
    std::printf("[%s%s W=%d] weights after %lld steps: |dw|/|w| %.2e; largest in one tensor %.2e of its largest entry "
                "(%s)\n",
                encoder, invariant ? " invariant" : "", w, static_cast<long long>(kSteps), relative, worst,
                worst_name.c_str());
  }
}

INSTANTIATE_TEST_SUITE_P(DemoJob, Fp32Contract,
                         ::testing::Values(Variant{"vit_tiny", false}, Variant{"resnet50_tiny", false},
                                           Variant{"vit_tiny", true}, Variant{"resnet50_tiny", true}),
                         [](const auto& info) {
                           return std::string(info.param.encoder) + (info.param.batch_invariant ? "_batch_invariant" : "");
                         });

}  // namespace
}  // namespace mgca::train
