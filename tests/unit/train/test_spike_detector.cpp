// LossSpikeDetector (llm.c's outlier detector) against numpy: the z-score of
// each value against the window of the last W values, itself included
// (population standard deviation); NaN for the first W values (llm.c fills
// its window with them before it scores any).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mgca/train/spike_detector.h"
#include "mgca/util/error.h"
#include "mgca/util/rng.h"
#include "support/test_support.h"

namespace mgca::train {
namespace {

std::vector<double> losses(int n) {
  util::Rng rng(util::make_key({17, 3}));
  std::vector<double> out;
  for (int i = 0; i < n; ++i) out.push_back(2.0 - 0.01 * i + 0.05 * rng.normal() + (i == 40 ? 3.0 : 0.0));
  return out;
}

TEST(LossSpikeDetector, MatchesNumpyOverASlidingWindow) {
  const int window = 16;
  const auto values = losses(64);
  const std::string script = fmt::format(
      "import numpy as np\n"
      "v = np.array([{}])\n"
      "for i in range(len(v)):\n"
      "    w = v[max(0, i - {} + 1):i + 1]\n"
      "    print(repr(float((v[i] - w.mean()) / w.std())) if i >= {} else 'nan')\n",
      fmt::join(values, ", "), window, window);
  const auto dir = test::TempDir("mgca-spike");
  test::write_text_file(dir.path() / "z.py", script);
  const auto r = test::run_command(test::python() + " " + (dir.path() / "z.py").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream expected(r.output);

  LossSpikeDetector detector(window);
  int compared = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    std::string line;
    ASSERT_TRUE(std::getline(expected, line)) << r.output;
    const double z = detector.update(values[i]);
    if (line == "nan") {
      EXPECT_TRUE(std::isnan(z)) << i;
      continue;
    }
    EXPECT_NEAR(z, std::stod(line), 1e-9 * std::max(1.0, std::abs(z))) << i;
    ++compared;
    if (i == 40) {
      EXPECT_GT(z, 3.0) << "the injected spike";
    }
    EXPECT_LE(z, LossSpikeDetector::max_zscore(window) + 1e-12);
  }
  EXPECT_EQ(compared, 64 - window);
}

TEST(LossSpikeDetector, RestoredWindowContinuesBitForBit) {
  const auto values = losses(40);
  LossSpikeDetector straight(8), first(8), second(8);
  for (size_t i = 0; i < 21; ++i) {
    straight.update(values[i]);
    first.update(values[i]);
  }
  second.restore(first.serialize(), "test");
  for (size_t i = 21; i < values.size(); ++i) {
    const double a = straight.update(values[i]), b = second.update(values[i]);
    EXPECT_EQ(std::memcmp(&a, &b, sizeof(double)), 0) << i;
  }
  LossSpikeDetector partial(8);
  partial.update(1.0);
  LossSpikeDetector partial_copy(8);
  partial_copy.restore(partial.serialize(), "test");
  EXPECT_EQ(partial_copy.serialize(), partial.serialize());
}

TEST(LossSpikeDetector, RestoreNamesTheSourceOfABadWindow) {
  LossSpikeDetector eight(8), sixteen(16);
  eight.update(1.0);
  try {
    sixteen.restore(eight.serialize(), "ckpt/model.safetensors");
    ADD_FAILURE() << "expected an error";
  } catch (const mgca::Error& e) {
    EXPECT_NE(std::string(e.what()).find("ckpt/model.safetensors: the loss spike window '8 0 1' does not fit "
                                         "optimizer.spike_window = 16"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(eight.restore("8 0 1 x", "f"), mgca::Error);
  EXPECT_THROW(eight.restore("8 3 1 2", "f"), mgca::Error);  // a ring position needs a full window
}

}  // namespace
}  // namespace mgca::train
