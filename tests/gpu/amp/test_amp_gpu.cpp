// bf16 autocast on CUDA: the checks of tests/mpi/amp (amp_checks.h) on the
// first GPU, one rank, through the NCCL communicator of `mgca train`
// (Communicator::world, MPI singleton). Skipped, saying why, without a GPU.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "mgca/comm/runtime.h"
#include "mpi/amp/amp_checks.h"
#include "support/world.h"

namespace mgca::test::amp {
namespace {

#define SKIP_WITHOUT_CUDA()                                                           \
  do {                                                                                \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible to libtorch"; \
  } while (0)

const torch::Device kGpu(torch::kCUDA, 0);

TEST(AutocastGpu, MgcaVitStepMatchesFp32) {
  SKIP_WITHOUT_CUDA();
  expect_bf16_step_close_to_fp32(tiny_config("mgca", "vit_tiny", "cuda", "none"), world(), kGpu);
}

TEST(AutocastGpu, MgcaResnetStepMatchesFp32) {
  SKIP_WITHOUT_CUDA();
  expect_bf16_step_close_to_fp32(tiny_config("mgca", "resnet50_tiny", "cuda", "none"), world(), kGpu);
}

TEST(AutocastGpu, ConvirtStepMatchesFp32) {
  SKIP_WITHOUT_CUDA();
  expect_bf16_step_close_to_fp32(tiny_config("convirt", "resnet50_tiny", "cuda", "none"), world(), kGpu);
}

TEST(AutocastGpu, ObjectivesRunInFp32Vit) {
  SKIP_WITHOUT_CUDA();
  expect_objectives_fp32_under_autocast("vit_tiny", world(), kGpu);
}

TEST(AutocastGpu, ObjectivesRunInFp32Resnet) {
  SKIP_WITHOUT_CUDA();
  expect_objectives_fp32_under_autocast("resnet50_tiny", world(), kGpu);
}

TEST(AutocastGpu, SyncBatchNormStatisticsInFp32) {
  SKIP_WITHOUT_CUDA();
  expect_syncbn_statistics_fp32(world(), kGpu);
}

}  // namespace
}  // namespace mgca::test::amp
