// runtime.threads must reach the BLAS (util/cpu_threads.h): libtorch 2.11's
// MKL pool follows compat::set_cpu_threads.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/util/cpu_threads.h"
#include "mgca/util/torch_compat.h"

namespace mgca::util {
namespace {

TEST(CpuThreads, SetCpuThreadsReachesTheBlas) {
  // Loads libtorch's BLAS (a GEMM big enough to go to it).
  const auto product = torch::mm(torch::ones({64, 64}), torch::ones({64, 64}));
  ASSERT_EQ(product[0][0].item<float>(), 64.0f);
  ASSERT_GE(blas_threads(), 1) << "libtorch_cpu carries no MKL: check which BLAS it uses and size its pool";
  compat::set_cpu_threads(1);
  EXPECT_EQ(blas_threads(), 1);
  EXPECT_EQ(at::get_num_threads(), 1);
  compat::set_cpu_threads(2);
  EXPECT_EQ(blas_threads(), 2);
  EXPECT_EQ(at::get_num_threads(), 2);
}

}  // namespace
}  // namespace mgca::util
