// bf16 autocast on CPU under mpirun -np 1 and 2: full MGCA (tiny ViT and
// ResNet) and ConVIRT steps against fp32, and the fp32 parts (objectives,
// Sinkhorn, SyncBatchNorm). The checks are in amp_checks.h.
#include <gtest/gtest.h>

#include "amp_checks.h"
#include "support/world.h"

namespace mgca::test::amp {
namespace {

TEST(AutocastCpu, MgcaVitStepMatchesFp32) {
  expect_bf16_step_close_to_fp32(tiny_config("mgca", "vit_tiny", "cpu", "none"), world(), torch::kCPU);
}

TEST(AutocastCpu, MgcaResnetStepMatchesFp32) {
  expect_bf16_step_close_to_fp32(tiny_config("mgca", "resnet50_tiny", "cpu", "none"), world(), torch::kCPU);
}

TEST(AutocastCpu, ConvirtStepMatchesFp32) {
  expect_bf16_step_close_to_fp32(tiny_config("convirt", "resnet50_tiny", "cpu", "none"), world(), torch::kCPU);
}

TEST(AutocastCpu, ObjectivesRunInFp32Vit) { expect_objectives_fp32_under_autocast("vit_tiny", world(), torch::kCPU); }

TEST(AutocastCpu, ObjectivesRunInFp32Resnet) {
  expect_objectives_fp32_under_autocast("resnet50_tiny", world(), torch::kCPU);
}

TEST(AutocastCpu, SyncBatchNormStatisticsInFp32) { expect_syncbn_statistics_fp32(world(), torch::kCPU); }

// The trainer's rule: bf16 on CPU as well, auto only on a GPU, never in float64.
TEST(AutocastCpu, TrainerRule) {
  auto config = tiny_config("mgca", "vit_tiny", "cpu", "bf16");
  EXPECT_TRUE(train::uses_autocast(config, torch::kCPU));
  config.runtime.autocast = train::Autocast::Auto;
  EXPECT_FALSE(train::uses_autocast(config, torch::kCPU));
  EXPECT_TRUE(train::uses_autocast(config, torch::Device(torch::kCUDA, 0)));
  config.runtime.dtype = train::ComputeDtype::Float64;
  EXPECT_FALSE(train::uses_autocast(config, torch::Device(torch::kCUDA, 0)));
  const auto job = source_dir() / "jobs" / "ci-tiny.toml";
  try {
    train::parse_config(read_text_file(job), job.string(), {"runtime.autocast=\"bf16\"", "runtime.dtype=\"float64\""});
    ADD_FAILURE() << "bf16 autocast with float64 weights was accepted";
  } catch (const mgca::Error& error) {
    EXPECT_NE(std::string(error.what()).find("bf16 needs runtime.dtype = \"float32\""), std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace mgca::test::amp
