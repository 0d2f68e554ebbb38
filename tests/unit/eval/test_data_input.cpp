// Reading dataset splits for evaluation.
#include <gtest/gtest.h>

#include <cmath>

#include "eval_test_util.h"
#include "mgca/eval/data_input.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::eval {
namespace {

testing::SampleSpec sample(int64_t i, int64_t s) {
  testing::SampleSpec out;
  out.report = "report " + std::to_string(i) + "\nsecond sentence";
  out.labels = {static_cast<float>(i % 2), i == 3 ? NAN : -1.0f};
  out.image.resize(static_cast<size_t>(s * s));
  for (int64_t p = 0; p < s * s; ++p) out.image[p] = static_cast<uint8_t>((i * 31 + p) % 256);
  return out;
}

TEST(EvalSplit, LabelsReportsImagesAndDigest) {
  mgca::test::TempDir dir;
  testing::write_dataset(dir / "data/test", 8, {"a", "b"}, 7, [](int64_t i) { return sample(i, 8); });
  const EvalSplit split(dir / "data/test", "test");
  EXPECT_EQ(split.size(), 7);
  EXPECT_EQ(split.image_size(), 8);
  EXPECT_EQ(split.label_names(), (std::vector<std::string>{"a", "b"}));
  const Matrix labels = split.labels();
  ASSERT_EQ(labels.rows, 7);
  EXPECT_EQ(labels.at(5, 0), 1.0);
  EXPECT_EQ(labels.at(4, 1), -1.0);
  EXPECT_TRUE(std::isnan(labels.at(3, 1)));
  const auto reports = split.reports(4, 3);  // crosses a shard boundary (4 per shard)
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports[1], "report 5\nsecond sentence");
  const auto images = split.images(3, 2);
  ASSERT_EQ(images.size(), 2u * 64u);
  EXPECT_EQ(images[64 + 5], sample(4, 8).image[5]);
  EXPECT_EQ(split.digest().size(), 64u);
  EXPECT_THROW(split.images(6, 2), mgca::Error);

  // A dataset with other content has another digest.
  testing::write_dataset(dir / "other", 8, {"a", "b"}, 7, [](int64_t i) { return sample(i + 1, 8); });
  EXPECT_NE(EvalSplit(dir / "other", "test").digest(), split.digest());
}

TEST(EvalSplit, ErrorsNameTheFolder) {
  mgca::test::TempDir dir;
  try {
    EvalSplit(dir / "nowhere", "val");
    FAIL();
  } catch (const mgca::Error& e) {
    EXPECT_NE(std::string(e.what()).find("val split"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nowhere"), std::string::npos) << e.what();
  }
  testing::write_dataset(dir / "unlabelled", 8, {}, 2, [](int64_t i) { return sample(i, 8); });
  const EvalSplit split(dir / "unlabelled", "train");
  EXPECT_THROW(split.labels(), mgca::Error);
}

TEST(EvalSplit, ResolveSplits) {
  mgca::test::TempDir dir;
  for (const char* name : {"train", "valid", "test"}) {
    testing::write_dataset(dir / "d" / name, 8, {"a", "b"}, 2, [](int64_t i) { return sample(i, 8); });
  }
  const auto paths = resolve_splits(dir / "d", "", "", "");
  EXPECT_EQ(paths.train, dir / "d/train");
  EXPECT_EQ(paths.val, dir / "d/valid");
  EXPECT_EQ(paths.test, dir / "d/test");
  const auto explicit_paths = resolve_splits(dir / "d", "", dir / "x", "");
  EXPECT_EQ(explicit_paths.val, dir / "x");
  EXPECT_TRUE(resolve_splits("", "", "", "").train.empty());
}

// MIMIC-CXR names its validation split "validate" (mgca prep keeps the name);
// "val" wins when both exist; no validation folder leaves val empty.
TEST(EvalSplit, ResolveSplitsMimicValidate) {
  mgca::test::TempDir dir;
  for (const char* name : {"train", "validate", "test"}) {
    testing::write_dataset(dir / "m" / name, 8, {"a", "b"}, 2, [](int64_t i) { return sample(i, 8); });
  }
  EXPECT_EQ(resolve_splits(dir / "m", "", "", "").val, dir / "m/validate");
  testing::write_dataset(dir / "m/val", 8, {"a", "b"}, 2, [](int64_t i) { return sample(i, 8); });
  EXPECT_EQ(resolve_splits(dir / "m", "", "", "").val, dir / "m/val");
  testing::write_dataset(dir / "n/train", 8, {"a", "b"}, 2, [](int64_t i) { return sample(i, 8); });
  std::filesystem::create_directories(dir / "n/validate");  // a folder without a manifest is no split
  EXPECT_TRUE(resolve_splits(dir / "n", "", "", "").val.empty());
}

}  // namespace
}  // namespace mgca::eval
