// Tensor comparisons for tests: element-wise relative error with a report
// that names the worst element.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

namespace mgca::test {

// Max over elements of |a - b| / max(|b|, floor): relative error against the
// reference b, with `floor` guarding elements near zero.
inline double max_relative_error(const torch::Tensor& actual, const torch::Tensor& expected,
                                 double floor = 1e-6) {
  auto a = actual.detach().to(torch::kCPU, torch::kFloat64);
  auto b = expected.detach().to(torch::kCPU, torch::kFloat64);
  if (a.numel() == 0) return 0.0;
  auto denom = b.abs().clamp_min(floor);
  return ((a - b).abs() / denom).max().item<double>();
}

// Passes when shapes match and every element satisfies
// |a - b| <= rtol * |b| + atol. Reports the worst element otherwise.
inline ::testing::AssertionResult AllClose(const torch::Tensor& actual, const torch::Tensor& expected,
                                           double rtol, double atol = 0.0) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure()
           << "shape " << actual.sizes() << " != expected " << expected.sizes();
  }
  if (actual.numel() == 0) return ::testing::AssertionSuccess();
  auto a = actual.detach().to(torch::kCPU, torch::kFloat64);
  auto b = expected.detach().to(torch::kCPU, torch::kFloat64);
  auto excess = (a - b).abs() - (rtol * b.abs() + atol);
  auto nan_mismatch = a.isnan().ne(b.isnan());
  if (nan_mismatch.any().item<bool>()) {
    return ::testing::AssertionFailure() << "NaN pattern differs";
  }
  excess = excess.nan_to_num(0.0);
  const int64_t worst = excess.flatten().argmax().item<int64_t>();
  if (excess.flatten()[worst].item<double>() <= 0.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "element " << worst << ": got " << a.flatten()[worst].item<double>() << ", expected "
         << b.flatten()[worst].item<double>() << " (rtol " << rtol << ", atol " << atol
         << "; max relative error " << max_relative_error(actual, expected) << ")";
}

// AllClose with rtol = rel and atol = rel · max|expected|: relative error
// with an absolute floor scaled to the tensor, for entries near zero.
inline ::testing::AssertionResult Close(const torch::Tensor& actual, const torch::Tensor& expected,
                                        double rel) {
  const double scale = expected.numel() > 0 ? expected.detach().abs().max().item<double>() : 0.0;
  return AllClose(actual.detach().contiguous(), expected, rel, rel * scale);
}

}  // namespace mgca::test
