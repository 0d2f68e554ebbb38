// The evaluation image transform against torchvision's CenterCrop + Normalize
// (tests/unit/eval/preprocess_reference.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "mgca/eval/preprocess.h"
#include "support/tensor_checks.h"
#include "support/test_support.h"

namespace mgca::eval {
namespace {

torch::Tensor reference(const torch::Tensor& images, int64_t crop) {
  mgca::test::TempDir dir;
  const int64_t n = images.size(0), s = images.size(1);
  {
    std::ofstream out(dir / "in.raw", std::ios::binary);
    out.write(reinterpret_cast<const char*>(images.data_ptr<uint8_t>()), images.numel());
  }
  const auto script = mgca::test::source_dir() / "tests/unit/eval/preprocess_reference.py";
  const auto run = mgca::test::run_command(
      mgca::test::python() + " " + script.string() + " " + (dir / "in.raw").string() + " " +
      std::to_string(s) + " " + std::to_string(n) + " " + std::to_string(crop) + " " +
      (dir / "out.raw").string());
  EXPECT_EQ(run.exit_code, 0) << run.output;
  auto out = torch::empty({n, 1, crop, crop}, torch::kFloat32);
  std::ifstream in(dir / "out.raw", std::ios::binary);
  in.read(reinterpret_cast<char*>(out.data_ptr<float>()), out.numel() * 4);
  EXPECT_TRUE(in.good());
  return out;
}

TEST(Preprocess, MatchesTorchvision) {
  torch::manual_seed(0);
  // (S, crop): MGCA's 256→224; odd margins (torchvision rounds the offset
  // half to even: 4.5 → 4, 5.5 → 6); no margin.
  for (auto [s, crop] : std::vector<std::pair<int64_t, int64_t>>{{256, 224}, {73, 64}, {75, 64}, {64, 64}}) {
    auto images = torch::randint(0, 256, {3, s, s}, torch::kInt64).to(torch::kUInt8);
    const auto ours = preprocess_images(images, crop);
    ASSERT_EQ(ours.sizes(), (std::vector<int64_t>{3, 1, crop, crop}));
    EXPECT_TRUE(mgca::test::AllClose(ours, reference(images, crop), 1e-6, 1e-6))
        << "S " << s << " crop " << crop;
  }
}

TEST(Preprocess, PaperSettingIsACentreCrop) {
  auto images = torch::randint(0, 256, {2, 256, 256}, torch::kInt64).to(torch::kUInt8);
  const auto ours = preprocess_images(images, 224);
  const auto crop = images.narrow(1, 16, 224).narrow(2, 16, 224).to(torch::kFloat32).div(255.0).sub(0.5).div(0.5);
  EXPECT_TRUE(torch::equal(ours.squeeze(1), crop));
  // A crop larger than the stored images is an error that says what to do.
  try {
    preprocess_images(torch::zeros({1, 48, 48}, torch::kUInt8), 64);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("--image-size ≥ 64"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mgca::eval
