// The feature cache: reused only when every key field matches.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/eval/features.h"
#include "mgca/io/safetensors.h"
#include "support/test_support.h"

namespace mgca::eval {
namespace {

TEST(FeatureCache, ReusedOnlyWhenTheKeyMatches) {
  mgca::test::TempDir dir;
  const auto path = dir / "cache/features.safetensors";
  const CacheKey key = {{"encoder.sha256", "abc"}, {"dataset.digest", "d1"}, {"image_size", "64"}};
  auto features = torch::randn({5, 4});
  std::string why;
  EXPECT_FALSE(read_feature_cache(path, key, &why));
  EXPECT_EQ(why, "absent");
  write_feature_cache(path, {{"features", features}}, key, {{"label_names", "[\"a\"]"}});

  const auto hit = read_feature_cache(path, key, &why);
  ASSERT_TRUE(hit) << why;
  EXPECT_TRUE(torch::equal(hit->at("features"), features));
  EXPECT_EQ(feature_cache_info(path).at("label_names"), "[\"a\"]");

  CacheKey other = key;
  other["image_size"] = "224";
  EXPECT_FALSE(read_feature_cache(path, other, &why));
  EXPECT_NE(why.find("key 'image_size' differs: cache '64', now '224'"), std::string::npos) << why;
  CacheKey fewer = key;
  fewer.erase("dataset.digest");
  EXPECT_FALSE(read_feature_cache(path, fewer, &why));
  EXPECT_NE(why.find("extra key 'dataset.digest'"), std::string::npos) << why;
  CacheKey more = key;
  more["split"] = "test";
  EXPECT_FALSE(read_feature_cache(path, more, &why));
  EXPECT_NE(why.find("key 'split' absent"), std::string::npos) << why;
}

TEST(FeatureCache, ForeignOrCorruptFilesAreStale) {
  mgca::test::TempDir dir;
  const auto path = dir / "f.safetensors";
  io::save_safetensors(path, {{"x", torch::zeros({2})}}, {{"format", "pt"}});
  std::string why;
  EXPECT_FALSE(read_feature_cache(path, {}, &why));
  EXPECT_NE(why.find("not a feature cache"), std::string::npos) << why;
  mgca::test::write_text_file(path, "garbage");
  EXPECT_FALSE(read_feature_cache(path, {}, &why));
  EXPECT_NE(why.find("unreadable"), std::string::npos) << why;
}

}  // namespace
}  // namespace mgca::eval
