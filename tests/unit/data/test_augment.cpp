// Augmentations against torchvision 0.14's functional ops on float tensors
// (tests/unit/data/augment_reference.py), op by op and as whole pipelines
// with the same random parameters; and their determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "mgca/data/augment.h"
#include "mgca/data/synth.h"
#include "mgca/util/error.h"
#include "mgca/util/rng.h"
#include "support/test_support.h"

namespace mgca::data {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<float> read_floats(const fs::path& path) {
  const std::string bytes = test::read_text_file(path);
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  return values;
}

struct Comparison {
  double max_error = 0;
  int64_t mismatches = 0;  // elements off by more than the tolerance
};

Comparison compare(const std::vector<float>& actual, const std::vector<float>& expected, double tolerance) {
  EXPECT_EQ(actual.size(), expected.size());
  Comparison c;
  for (size_t i = 0; i < std::min(actual.size(), expected.size()); ++i) {
    const double error = std::fabs(double{actual[i]} - double{expected[i]});
    c.max_error = std::max(c.max_error, error);
    c.mismatches += error > tolerance;
  }
  return c;
}

TEST(Augment, OpsAndPipelinesMatchTorchvision) {
  constexpr int64_t S = 256, C = 224;
  SynthOptions synth;
  synth.image_size = S;
  SynthSample sample;
  generate_synth_sample(synth, 3, sample);
  // A smooth-ish float test image for the single ops: the normalised synthetic image's crop.
  std::vector<float> small(C * C);
  for (int64_t y = 0; y < C; ++y) {
    for (int64_t x = 0; x < C; ++x) small[static_cast<size_t>(y * C + x)] = sample.image[static_cast<size_t>((y + 10) * S + x + 20)] / 255.f;
  }
  test::TempDir dir("mgca-augment");
  test::write_text_file(dir / "input.raw", std::string(sample.image.begin(), sample.image.end()));
  test::write_text_file(dir / "small.raw", std::string(reinterpret_cast<const char*>(small.data()), small.size() * 4));

  json cases = {{"size", S}, {"crop_size", C}, {"cases", json::array()}};
  std::map<std::string, std::vector<float>> ours;
  const auto add = [&](const std::string& name, const std::string& op, json params, std::vector<float> result) {
    cases["cases"].push_back({{"name", name}, {"op", op}, {"params", params}});
    ours[name] = std::move(result);
  };
  std::vector<float> unit(S * S);
  for (int64_t i = 0; i < S * S; ++i) unit[static_cast<size_t>(i)] = sample.image[static_cast<size_t>(i)] / 255.f;
  // Shrinking, enlarging and mixed crops.
  const std::vector<std::array<int64_t, 4>> crops = {{0, 0, 256, 256}, {10, 30, 200, 180}, {100, 50, 90, 150}, {3, 0, 253, 199}};
  for (size_t k = 0; k < crops.size(); ++k) {
    const auto [top, left, h, w] = crops[k];
    std::vector<float> out(C * C);
    ops::resized_crop(unit.data(), S, S, top, left, h, w, out.data(), C, C);
    add(fmt::format("resized_crop{}", k), "resized_crop",
        {{"top", top}, {"left", left}, {"height", h}, {"width", w}, {"out_h", C}, {"out_w", C}}, out);
  }
  const std::vector<std::tuple<double, int64_t, int64_t, double>> affines = {
      {0.0, 0, 0, 1.0}, {13.7, 5, -8, 1.03}, {-19.2, -22, 21, 0.951}, {7.0, 0, 0, 1.049}};
  for (size_t k = 0; k < affines.size(); ++k) {
    const auto [angle, tx, ty, scale] = affines[k];
    std::vector<float> out(C * C);
    ops::affine_nearest(small.data(), out.data(), C, C, angle, tx, ty, scale);
    add(fmt::format("affine{}", k), "affine", {{"angle", angle}, {"tx", tx}, {"ty", ty}, {"scale", scale}}, out);
  }
  for (const double factor : {0.6, 1.37}) {
    auto b = small;
    ops::adjust_brightness(b.data(), C * C, factor);
    add(fmt::format("brightness{}", factor), "brightness", {{"factor", factor}}, b);
    auto c = small;
    ops::adjust_contrast(c.data(), C * C, factor);
    add(fmt::format("contrast{}", factor), "contrast", {{"factor", factor}}, c);
  }
  for (const double sigma : {0.1, 1.3, 3.0}) {
    auto b = small;
    ops::gaussian_blur(b.data(), C, C, 23, sigma);
    add(fmt::format("blur{}", sigma), "blur", {{"kernel", 23}, {"sigma", sigma}}, b);
  }
  auto flipped = small;
  ops::hflip(flipped.data(), C, C);
  add("hflip", "hflip", json::object(), flipped);

  AugmentOptions options;
  // MGCA train (random crop) and eval (centre crop).
  for (uint64_t key = 0; key < 3; ++key) {
    util::Rng rng(key), same(key);
    std::vector<float> out(C * C);
    options.pipeline = Pipeline::Mgca;
    augment_image(options, sample.image.data(), S, rng, out.data());
    const int64_t top = same.randint(0, S - C + 1), left = same.randint(0, S - C + 1);
    add(fmt::format("mgca{}", key), "crop", {{"top", top}, {"left", left}}, out);
  }
  {
    util::Rng rng(0);
    std::vector<float> out(C * C);
    options.pipeline = Pipeline::Eval;
    augment_image(options, sample.image.data(), S, rng, out.data());
    add("eval", "center", json::object(), out);
  }
  // Whole ConVIRT pipelines with parameters drawn as augment_image draws them.
  options.pipeline = Pipeline::Convirt;
  for (uint64_t key = 0; key < 6; ++key) {
    util::Rng rng(util::make_key({key})), same(util::make_key({key}));
    std::vector<float> out(C * C);
    augment_image(options, sample.image.data(), S, rng, out.data());
    const ConvirtParams p = sample_convirt_params(options, S, S, same);
    add(fmt::format("convirt{}", key), "convirt",
        {{"top", p.crop_top}, {"left", p.crop_left}, {"height", p.crop_height}, {"width", p.crop_width},
         {"flip", p.flip}, {"angle", p.angle}, {"tx", p.translate_x}, {"ty", p.translate_y}, {"scale", p.scale},
         {"brightness_first", p.brightness_first}, {"brightness", p.brightness}, {"contrast", p.contrast},
         {"kernel", options.blur_kernel}, {"sigma", p.sigma}},
        out);
    // Parameters stay in the documented ranges.
    EXPECT_GE(p.crop_height * p.crop_width, static_cast<int64_t>(0.6 * S * S * 0.99));
    EXPECT_LE(std::fabs(p.angle), 20.0);
    EXPECT_LE(std::abs(p.translate_x), 22);
    EXPECT_TRUE(p.sigma >= 0.1 && p.sigma <= 3.0);
  }
  test::write_text_file(dir / "cases.json", cases.dump());
  const auto script = test::source_dir() / "tests/unit/data/augment_reference.py";
  const auto result = test::run_command(mgca::test::python() + " " + script.string() + " " + dir.path().string());
  ASSERT_EQ(result.exit_code, 0) << result.output;

  for (const auto& [name, values] : ours) {
    SCOPED_TRACE(name);
    const auto expected = read_floats(dir / (name + ".out.raw"));
    const auto exact = compare(values, expected, 0.0);
    const auto loose = compare(values, expected, 2e-4);
    std::printf("  %-16s max |error| %.2e, %lld of %zu elements differ, %lld by more than 2e-4\n", name.c_str(),
                exact.max_error, static_cast<long long>(exact.mismatches), values.size(),
                static_cast<long long>(loose.mismatches));
    if (name.rfind("mgca", 0) == 0 || name == "eval" || name == "hflip" || name.rfind("affine", 0) == 0) {
      // Same arithmetic (table of v / 255, subtract, divide) or pure copies: exact,
      // except that a nearest-neighbour source pixel may round the other way
      // when float32 and double land on either side of .5.
      const auto c = compare(values, expected, 0.0);
      EXPECT_LE(c.mismatches, name.rfind("affine", 0) == 0 ? 30 : 0) << "max error " << c.max_error;
    } else if (name.rfind("convirt", 0) == 0) {
      // Float32 summation order (separable vs 2-D blur) and the affine's rare
      // nearest-pixel flips, blurred: tiny errors, a few larger ones.
      const auto c = compare(values, expected, 2e-4);
      EXPECT_LE(c.mismatches, 200) << "max error " << c.max_error;
    } else {
      const auto c = compare(values, expected, 2e-5);
      EXPECT_EQ(c.mismatches, 0) << "max error " << c.max_error;
    }
  }
}

TEST(Augment, DeterministicInTheKey) {
  constexpr int64_t S = 64, C = 48;
  SynthOptions synth;
  synth.image_size = S;
  SynthSample sample;
  generate_synth_sample(synth, 1, sample);
  AugmentOptions options;
  options.crop_size = C;
  options.blur_kernel = 7;
  for (const auto pipeline : {Pipeline::Mgca, Pipeline::Convirt}) {
    options.pipeline = pipeline;
    std::vector<float> a(C * C), b(C * C), c(C * C);
    util::Rng r1(util::make_key({1, 2, 3})), r2(util::make_key({1, 2, 3})), r3(util::make_key({1, 2, 4}));
    augment_image(options, sample.image.data(), S, r1, a.data());
    augment_image(options, sample.image.data(), S, r2, b.data());
    augment_image(options, sample.image.data(), S, r3, c.data());
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
  }
  EXPECT_EQ(parse_pipeline("convirt"), Pipeline::Convirt);
  EXPECT_THROW(parse_pipeline("simclr"), Error);
  options.crop_size = 65;
  util::Rng rng(0);
  std::vector<float> out(65 * 65);
  EXPECT_THROW(augment_image(options, sample.image.data(), S, rng, out.data()), Error);
}

}  // namespace
}  // namespace mgca::data
