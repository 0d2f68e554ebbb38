// Peak fp32 GEMM rate of this machine through libtorch's at::mm (the same
// BLAS our model and the PyTorch reference call): the denominator of model
// FLOP utilisation in bench/step. Square products n×n·n×n at several n, each
// timed as the best of `reps` runs after a warm-up; prints one JSON object.
//
//   bench_gemm_peak [--threads T] [--sizes 512,1024,2048] [--reps 5]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "mgca/util/error.h"
#include "mgca/util/torch_compat.h"

int main(int argc, char** argv) {
  int threads = 1, reps = 5;
  std::vector<int64_t> sizes = {256, 512, 1024, 2048};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      MGCA_CHECK(i + 1 < argc, "bench_gemm_peak: {} needs a value", a);
      return argv[++i];
    };
    if (a == "--threads") {
      threads = std::stoi(next());
    } else if (a == "--reps") {
      reps = std::stoi(next());
    } else if (a == "--sizes") {
      sizes.clear();
      std::stringstream ss(next());
      for (std::string s; std::getline(ss, s, ',');) sizes.push_back(std::stoll(s));
    } else {
      std::cerr << "usage: bench_gemm_peak [--threads T] [--sizes 512,1024,2048] [--reps 5]\n";
      return 2;
    }
  }
  MGCA_CHECK(threads >= 1 && reps >= 1 && !sizes.empty(), "bench_gemm_peak: bad arguments");
  mgca::compat::set_cpu_threads(threads);
  torch::NoGradGuard no_grad;
  double best_overall = 0;
  std::string rows;
  for (const int64_t n : sizes) {
    const auto a = torch::randn({n, n}), b = torch::randn({n, n});
    auto c = torch::empty({n, n});
    at::mm_out(c, a, b);  // warm-up: first-touch, BLAS thread start
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      at::mm_out(c, a, b);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, s);
    }
    const double gflops = 2.0 * n * n * n / best / 1e9;
    best_overall = std::max(best_overall, gflops);
    char line[160];
    std::snprintf(line, sizeof line, "%s{\"n\": %lld, \"best_s\": %.6f, \"gflops\": %.2f}", rows.empty() ? "" : ", ",
                  static_cast<long long>(n), best, gflops);
    rows += line;
  }
  std::printf("{\"threads\": %d, \"reps\": %d, \"sizes\": [%s], \"peak_gflops\": %.2f}\n", threads, reps,
              rows.c_str(), best_overall);
  return 0;
}
