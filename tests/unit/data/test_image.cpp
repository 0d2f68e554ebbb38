// Image decoding and MGCA's resize-and-pad against independent references
// written by tests/unit/data/image_reference.py (numpy rules, PIL decoding).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mgca/data/image.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::data {
namespace {
namespace fs = std::filesystem;

std::vector<uint8_t> read_raw(const fs::path& path) {
  const std::string text = test::read_text_file(path);
  return std::vector<uint8_t>(text.begin(), text.end());
}

class ImageReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir("mgca-image-ref");
    const auto script = test::source_dir() / "tests/unit/data/image_reference.py";
    const auto result = test::run_command(mgca::test::python() + " " + script.string() + " " + dir_->path().string() +
                                          " " + (test::shared_data_dir() / "cxr-samples").string());
    ASSERT_EQ(result.exit_code, 0) << result.output;
    manifest_ = nlohmann::json::parse(result.output);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static fs::path path(const std::string& name) { return dir_->path() / name; }
  static test::TempDir* dir_;
  static nlohmann::json manifest_;
};
test::TempDir* ImageReference::dir_ = nullptr;
nlohmann::json ImageReference::manifest_;

TEST_F(ImageReference, EveryPngLayoutDecodesToTheDocumentedGray) {
  for (const std::string name : {"gray8", "gray16_sbit12", "gray16", "gray1", "gray4", "gray_alpha8", "rgb8",
                                 "rgba8", "rgb16", "palette8", "gray8_interlaced"}) {
    SCOPED_TRACE(name);
    DecodeNotes notes;
    const GrayImage image = read_image_file(path(name + ".png"), &notes);
    EXPECT_EQ(image.width, 23);
    EXPECT_EQ(image.height, 19);
    EXPECT_EQ(image.pixels, read_raw(path(name + ".expected.raw")));
    EXPECT_EQ(notes.sixteen_bit, name.find("16") != std::string::npos);
    EXPECT_EQ(notes.color, name.rfind("rgb", 0) == 0 || name == "palette8");
  }
}

TEST_F(ImageReference, RealSamplesDecodeAsPil) {
  // 8-bit gray PNG, RGB PNG, 3-channel JPEG (decoded straight to luminance).
  for (const std::string name : {"nih-00000001_000.png", "tbx11k-tb0005.png", "16747_3_1.jpg"}) {
    SCOPED_TRACE(name);
    const GrayImage image = read_image_file(test::shared_data_dir() / "cxr-samples" / name);
    EXPECT_EQ(image.width, manifest_[name]["width"].get<int64_t>());
    EXPECT_EQ(image.height, manifest_[name]["height"].get<int64_t>());
    EXPECT_EQ(image.pixels, read_raw(path(name + ".pil.raw")));
  }
}

// Float accumulation order differs from the float64 reference: a pixel may
// round the other way at .5. Allowed: at most 1 gray level, on < 0.5% of pixels.
void expect_close(const std::vector<uint8_t>& actual, const std::vector<uint8_t>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  size_t off_by_one = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const int diff = std::abs(int{actual[i]} - int{expected[i]});
    ASSERT_LE(diff, 1) << "pixel " << i;
    off_by_one += diff;
  }
  EXPECT_LT(static_cast<double>(off_by_one), 0.005 * static_cast<double>(actual.size()));
}

TEST_F(ImageReference, ResizeAndPadMatchesMgca) {
  for (const std::string name : {"nih-00000001_000.png", "tbx11k-tb0005.png", "16747_3_1.jpg"}) {
    SCOPED_TRACE(name);
    const GrayImage image = read_image_file(test::shared_data_dir() / "cxr-samples" / name);
    std::vector<uint8_t> out(256 * 256);
    resize_and_pad(image, 256, out.data());
    expect_close(out, read_raw(path(name + ".resized.raw")));
  }
  // The 1036x885 JPEG is wider than tall: padded top and bottom, 256 wide.
  const GrayImage wide = read_image_file(test::shared_data_dir() / "cxr-samples" / "16747_3_1.jpg");
  std::vector<uint8_t> out(256 * 256);
  resize_and_pad(wide, 256, out.data());
  const int64_t new_h = 885 * 256 / 1036;  // 218
  const int64_t top = (256 - new_h) / 2;   // 19 rows of zeros above, 19 below
  for (int64_t x = 0; x < 256; ++x) {
    EXPECT_EQ(out[static_cast<size_t>((top - 1) * 256 + x)], 0);
    EXPECT_EQ(out[static_cast<size_t>((top + new_h) * 256 + x)], 0);
  }
  // Enlarging a small wide image.
  GrayImage small;
  small.width = 37;
  small.height = 23;
  small.pixels = read_raw(path("small.raw"));
  std::vector<uint8_t> enlarged(64 * 64);
  resize_and_pad(small, 64, enlarged.data());
  expect_close(enlarged, read_raw(path("small.resized.raw")));
}

TEST(ImageDecode, BadInputsAreClearErrors) {
  const auto expect_error = [](const std::vector<uint8_t>& bytes, const std::string& expected) {
    try {
      decode_image(bytes.data(), bytes.size(), "case.png");
      ADD_FAILURE() << "no error, expected: " << expected;
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find(expected), std::string::npos) << error.what();
      EXPECT_NE(std::string(error.what()).find("'case.png'"), std::string::npos) << error.what();
    }
  };
  const std::string png_text = test::read_text_file(test::shared_data_dir() / "cxr-samples/nih-00000001_000.png");
  const std::vector<uint8_t> png(png_text.begin(), png_text.end());
  expect_error(std::vector<uint8_t>(png.begin(), png.begin() + static_cast<long>(png.size() / 2)), "truncated");
  expect_error(std::vector<uint8_t>(png.begin(), png.begin() + 20), "truncated");
  auto bad_crc = png;
  bad_crc[20] ^= 0xFF;  // inside IHDR: CRC error on a critical chunk
  expect_error(bad_crc, "PNG decoding failed");
  const std::string text = "this is a text file named .png\n";
  expect_error(std::vector<uint8_t>(text.begin(), text.end()), "not a PNG or JPEG image");
  expect_error({}, "empty file");
  const std::string jpeg_text = test::read_text_file(test::shared_data_dir() / "cxr-samples/16747_3_1.jpg");
  const std::vector<uint8_t> jpeg(jpeg_text.begin(), jpeg_text.end());
  expect_error(std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() / 2)), "JPEG");
  expect_error(std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + 10), "JPEG");
}

TEST(ImageDecode, EncodeDecodeRoundTrip) {
  std::vector<uint8_t> pixels(7 * 5);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7);
  const auto png = encode_png_gray(pixels.data(), 7, 5);
  const GrayImage image = decode_image(png.data(), png.size(), "round-trip");
  EXPECT_EQ(image.width, 7);
  EXPECT_EQ(image.height, 5);
  EXPECT_EQ(image.pixels, pixels);
}

}  // namespace
}  // namespace mgca::data
