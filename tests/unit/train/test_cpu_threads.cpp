// runtime.threads must reach the BLAS: Debian's libtorch runs its GEMMs in
// OpenBLAS, whose own thread pool at::set_num_threads does not size.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/util/cpu_threads.h"
#include "mgca/util/error.h"

namespace mgca::util {
namespace {

TEST(CpuThreads, SetBlasThreadsReachesOpenBlas) {
  // Loads libtorch's BLAS (a GEMM big enough to go to it).
  const auto product = torch::mm(torch::ones({64, 64}), torch::ones({64, 64}));
  ASSERT_EQ(product[0][0].item<float>(), 64.0f);
  if (blas_threads() < 0) GTEST_SKIP() << "this libtorch's BLAS is not OpenBLAS: nothing to size";
  ASSERT_TRUE(set_blas_threads(1));
  EXPECT_EQ(blas_threads(), 1);
  ASSERT_TRUE(set_blas_threads(2));
  EXPECT_EQ(blas_threads(), 2);
  EXPECT_THROW(set_blas_threads(0), Error);
}

}  // namespace
}  // namespace mgca::util
