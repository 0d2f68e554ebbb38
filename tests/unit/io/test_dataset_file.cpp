// Dataset files: round trip, manifest checks, checksums, corruption, and the
// format as a Python user reads it with h5py (docs/data-format.md).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <thread>

#include "mgca/io/dataset_file.h"
#include "mgca/util/error.h"
#include "mgca/util/rng.h"
#include "support/test_support.h"

namespace mgca::io {
namespace {
namespace fs = std::filesystem;
using test::TempDir;

std::vector<uint8_t> random_image(int64_t size, uint64_t key) {
  util::Rng rng(key);
  std::vector<uint8_t> image(static_cast<size_t>(size * size));
  for (auto& pixel : image) pixel = static_cast<uint8_t>(rng.next_u32() >> 24);
  return image;
}

struct Written {
  std::vector<std::string> ids, reports;
  std::vector<std::vector<uint8_t>> images;
  std::vector<std::vector<float>> labels;
};

// Writes `counts.size()` shards of the given sizes and the manifest.
Written write_dataset(const fs::path& dir, int64_t size, const std::vector<int64_t>& counts,
                      const std::vector<std::string>& label_names) {
  Written written;
  DatasetManifest manifest;
  manifest.source = "test";
  manifest.split = "train";
  manifest.image_size = size;
  manifest.label_names = label_names;
  manifest.info_json = R"({"note": "written by test_dataset_file"})";
  int64_t global = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    ShardWriter writer(dir / fmt::format("part-{}.h5", s), size, label_names);
    for (int64_t i = 0; i < counts[s]; ++i, ++global) {
      written.ids.push_back(fmt::format("sample-{}", global));
      // UTF-8 and newlines survive (reports hold sentences joined by '\n').
      written.reports.push_back(fmt::format("report {} caf\xc3\xa9\nsecond sentence {}", global, global));
      written.images.push_back(random_image(size, 1000 + static_cast<uint64_t>(global)));
      std::vector<float> labels;
      for (size_t l = 0; l < label_names.size(); ++l) {
        const int64_t kind = (global + static_cast<int64_t>(l)) % 4;
        labels.push_back(kind == 0 ? 1.0f : kind == 1 ? 0.0f : kind == 2 ? -1.0f : NAN);
      }
      written.labels.push_back(labels);
      writer.append(written.ids.back(), written.reports.back(), written.images.back().data(),
                    labels.empty() ? nullptr : labels.data());
    }
    manifest.shards.push_back(writer.close());
  }
  write_manifest(dir, manifest);
  return written;
}

void expect_same_label(float actual, float expected) {
  if (std::isnan(expected)) {
    EXPECT_TRUE(std::isnan(actual));
  } else {
    EXPECT_EQ(actual, expected);
  }
}

TEST(DatasetFile, RoundTripAcrossShards) {
  TempDir dir;
  const std::vector<std::string> names = {"Cardiomegaly", "Pleural Effusion", "No Finding"};
  // 40 images > one write batch; an empty shard in the middle is legal.
  const auto written = write_dataset(dir.path(), 16, {40, 0, 7}, names);
  auto dataset = Dataset::open(dir.path(), {.verify_checksums = true});
  ASSERT_EQ(dataset->size(), 47);
  EXPECT_EQ(dataset->image_size(), 16);
  EXPECT_EQ(dataset->manifest().label_names, names);
  EXPECT_EQ(dataset->manifest().source, "test");
  EXPECT_EQ(dataset->manifest().split, "train");
  EXPECT_EQ(nlohmann::json::parse(dataset->manifest().info_json).at("note"), "written by test_dataset_file");
  std::vector<uint8_t> image(16 * 16);
  for (int64_t i = 0; i < dataset->size(); ++i) {
    dataset->read_image(i, image.data());
    EXPECT_EQ(image, written.images[static_cast<size_t>(i)]) << "image " << i;
    EXPECT_EQ(dataset->id(i), written.ids[static_cast<size_t>(i)]);
    EXPECT_EQ(dataset->report(i), written.reports[static_cast<size_t>(i)]);
    const float* labels = dataset->labels(i);
    ASSERT_NE(labels, nullptr);
    for (size_t l = 0; l < names.size(); ++l) expect_same_label(labels[l], written.labels[static_cast<size_t>(i)][l]);
  }
  EXPECT_EQ(dataset->locate(40), std::make_pair(int64_t{2}, int64_t{0}));
  EXPECT_EQ(dataset->locate(39), std::make_pair(int64_t{0}, int64_t{39}));
  EXPECT_THROW(dataset->read_image(47, image.data()), Error);
  EXPECT_THROW(dataset->locate(-1), Error);
}

TEST(DatasetFile, OddImageSizeAndNoLabels) {
  // 5x5 = 25 bytes: covers Fletcher32's odd-length tail against what HDF5 stored.
  TempDir dir;
  const auto written = write_dataset(dir.path(), 5, {3}, {});
  auto dataset = Dataset::open(dir.path());
  EXPECT_FALSE(dataset->has_labels());
  std::vector<uint8_t> image(25);
  for (int64_t i = 0; i < 3; ++i) {
    dataset->read_image(i, image.data());
    EXPECT_EQ(image, written.images[static_cast<size_t>(i)]);
    EXPECT_EQ(dataset->labels(i), nullptr);
  }
}

TEST(DatasetFile, ParallelReadsAreExact) {
  TempDir dir;
  const auto written = write_dataset(dir.path(), 32, {64, 64}, {"a"});
  auto dataset = Dataset::open(dir.path());
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> image(32 * 32);
      for (int round = 0; round < 20; ++round) {
        for (int64_t i = t; i < dataset->size(); i += 4) {
          dataset->read_image(i, image.data());
          failures[static_cast<size_t>(t)] += image != written.images[static_cast<size_t>(i)];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(std::accumulate(failures.begin(), failures.end(), 0), 0);
}

TEST(DatasetFile, CorruptImageChunkNamesShardAndIndex) {
  TempDir dir;
  const auto written = write_dataset(dir.path(), 16, {10, 10}, {});
  // Find image 13 (shard 1, local 3) in the shard's bytes and flip one bit.
  const fs::path shard = dir / "part-1.h5";
  std::string bytes = test::read_text_file(shard);
  const std::string needle(written.images[13].begin(), written.images[13].end());
  const size_t at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 100] = static_cast<char>(bytes[at + 100] ^ 0x10);
  test::write_text_file(shard, bytes);

  auto dataset = Dataset::open(dir.path(), {.verify_checksums = false});  // metadata is intact: opening works
  std::vector<uint8_t> image(256);
  dataset->read_image(12, image.data());  // neighbours still read
  try {
    dataset->read_image(13, image.data());
    FAIL() << "corrupt image was read without error";
  } catch (const Error& error) {
    const std::string text = error.what();
    EXPECT_NE(text.find("part-1.h5"), std::string::npos) << text;
    EXPECT_NE(text.find("image 3 (id 'sample-13')"), std::string::npos) << text;
    EXPECT_NE(text.find("dataset index 13"), std::string::npos) << text;
    EXPECT_NE(text.find("Fletcher32"), std::string::npos) << text;
  }
  // The whole-file checksum notices too.
  try {
    Dataset::open(dir.path(), {.verify_checksums = true});
    FAIL() << "checksum mismatch not detected";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("SHA-256"), std::string::npos) << error.what();
  }
}

TEST(DatasetFile, ManifestProblemsAreClearErrors) {
  TempDir dir;
  write_dataset(dir.path(), 8, {4}, {"x"});
  const fs::path manifest_file = dir / kManifestFileName;
  const std::string good = test::read_text_file(manifest_file);
  const auto expect_error = [&](const std::string& manifest, const std::string& expected) {
    test::write_text_file(manifest_file, manifest);
    try {
      Dataset::open(dir.path());
      ADD_FAILURE() << "no error for: " << expected;
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find(expected), std::string::npos)
          << "expected '" << expected << "' in: " << error.what();
    }
  };
  auto doc = nlohmann::json::parse(good);
  auto edited = doc;
  edited.erase("image_size");
  expect_error(edited.dump(), "key 'image_size' is missing");
  edited = doc;
  edited["shards"][0]["count"] = 5;
  edited["num_samples"] = 5;
  expect_error(edited.dump(), "4 samples, the manifest says 5");
  edited = doc;
  edited["image_size"] = 9;
  expect_error(edited.dump(), "image size 8, the manifest says 9");
  edited = doc;
  edited["label_names"] = {"y"};
  expect_error(edited.dump(), "label names differ");
  edited = doc;
  edited["shards"][0]["file"] = "missing.h5";
  expect_error(edited.dump(), "missing.h5': no such file");
  edited = doc;
  edited["format_version"] = 99;
  expect_error(edited.dump(), "format_version 99 is not supported");
  expect_error("{not json", "invalid JSON");
  fs::remove(manifest_file);
  try {
    Dataset::open(dir.path());
    ADD_FAILURE() << "no error without a manifest";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("cannot open dataset.json"), std::string::npos) << error.what();
  }
}

TEST(DatasetFile, NotAShardIsAClearError) {
  TempDir dir;
  test::write_text_file(dir / "junk.h5", "this is not HDF5");
  try {
    ShardReader reader(dir / "junk.h5");
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("junk.h5': not a readable HDF5 file"), std::string::npos)
        << error.what();
  }
}

TEST(DatasetFile, UnclosedWriterLeavesNoFile) {
  TempDir dir;
  {
    ShardWriter writer(dir / "a.h5", 4, {});
    const std::vector<uint8_t> image(16, 7);
    writer.append("x", "r", image.data());
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(DatasetFile, ShardedWriterRollsOver) {
  TempDir dir;
  ShardedWriter writer(dir.path(), "rank0000", 4, {}, 3);
  const std::vector<uint8_t> image(16, 1);
  for (int i = 0; i < 7; ++i) writer.append(fmt::format("s{}", i), "", image.data());
  const auto shards = writer.finish();
  ASSERT_EQ(shards.size(), 3u);
  EXPECT_EQ(shards[0].file, "rank0000-00000.h5");
  EXPECT_EQ(shards[2].file, "rank0000-00002.h5");
  EXPECT_EQ(shards[0].count, 3);
  EXPECT_EQ(shards[2].count, 1);
}

TEST(Checksums, Sha256KnownVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  EXPECT_EQ(sha256_hex(million.data(), million.size()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Checksums, Fletcher32KnownValues) {
  // Worked by hand from the definition (big-endian words, zero-padded odd
  // tail, folds after the block and after the tail): words 0x6162 0x6364 give
  // sum1 0xC4C6, sum2 0x12628 -> 0x2629; the tail 0x6500 gives sum1 0x129C6
  // -> 0x29C7 and sum2 0x14FEF -> 0x4FF0. (Every test that reads an image
  // also checks it against the checksum HDF5 itself stored.)
  EXPECT_EQ(hdf5_fletcher32("abcde", 5), 0x4FF029C7u);
  EXPECT_EQ(hdf5_fletcher32("", 0), 0u);
}

// The format as documented: a Python user with h5py reads what we wrote.
TEST(DatasetFile, ReadableWithH5py) {
  TempDir dir;
  const auto written = write_dataset(dir.path(), 12, {5, 4}, {"Edema", "Pneumonia"});
  const fs::path script = test::source_dir() / "tests/unit/io/read_dataset_h5py.py";
  const auto result = test::run_command(mgca::test::python() + " " + script.string() + " " + dir.path().string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto doc = nlohmann::json::parse(result.output);
  ASSERT_EQ(doc.at("ids").size(), 9u);
  for (size_t i = 0; i < 9; ++i) {
    EXPECT_EQ(doc["ids"][i], written.ids[i]);
    EXPECT_EQ(doc["reports"][i], written.reports[i]);
    EXPECT_EQ(doc["image_sha256"][i], sha256_hex(written.images[i].data(), written.images[i].size()));
    for (size_t l = 0; l < 2; ++l) {
      const auto& value = doc["labels"][i][l];
      if (std::isnan(written.labels[i][l])) {
        EXPECT_TRUE(value.is_null());
      } else {
        EXPECT_EQ(value.get<float>(), written.labels[i][l]);
      }
    }
  }
  EXPECT_EQ(doc["label_names"], nlohmann::json({"Edema", "Pneumonia"}));
  EXPECT_EQ(doc["image_size"], 12);
  EXPECT_EQ(doc["checksums_ok"], true);
}

// And the other way round: a shard written by h5py with gzip compression (not
// our layout) is read through the HDF5 path.
TEST(DatasetFile, ReadsShardWrittenByH5pyWithCompression) {
  TempDir dir;
  const fs::path script = test::source_dir() / "tests/unit/io/write_dataset_h5py.py";
  const auto result = test::run_command(mgca::test::python() + " " + script.string() + " " + dir.path().string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto dataset = Dataset::open(dir.path(), {.verify_checksums = true});
  ASSERT_EQ(dataset->size(), 6);
  std::vector<uint8_t> image(10 * 10);
  for (int64_t i = 0; i < 6; ++i) {
    dataset->read_image(i, image.data());
    // The script fills image i with (i * 7 + y * 10 + x) % 256.
    for (int64_t y = 0; y < 10; ++y) {
      for (int64_t x = 0; x < 10; ++x) {
        ASSERT_EQ(image[static_cast<size_t>(y * 10 + x)], (i * 7 + y * 10 + x) % 256);
      }
    }
    EXPECT_EQ(dataset->id(i), fmt::format("py-{}", i));
    EXPECT_EQ(dataset->report(i), fmt::format("sentence one {}\nsentence two", i));
    EXPECT_EQ(dataset->labels(i)[0], static_cast<float>(i % 2));
  }
}

// Masks and boxes: written per sample, read back by index through shards (a
// sample without boxes and an empty mask included), and by h5py as the docs show.
TEST(DatasetFile, MasksAndBoxesRoundTripAndReadableWithH5py) {
  TempDir dir;
  const int64_t S = 10;
  DatasetManifest manifest;
  manifest.source = "test";
  manifest.split = "train";
  manifest.image_size = S;
  manifest.annotations = {true, true};
  std::vector<std::vector<uint8_t>> masks;
  std::vector<std::vector<Box>> boxes;
  int64_t global = 0;
  for (const int64_t count : {3, 2}) {
    ShardWriter writer(dir.path() / fmt::format("part-{}.h5", manifest.shards.size()), S, {}, {true, true});
    for (int64_t i = 0; i < count; ++i, ++global) {
      SampleAnnotation annotation;
      std::vector<uint8_t> mask(static_cast<size_t>(S * S), 0);
      for (int64_t b = 0; b < global % 3; ++b) {  // 0, 1 or 2 boxes
        const Box box{static_cast<float>(b), 1.5f, static_cast<float>(b + 3 + global), 9.f};
        annotation.boxes.push_back(box);
        for (int64_t y = 2; y < 9; ++y) {
          for (int64_t x = b; x < b + 3 + global; ++x) mask[static_cast<size_t>(y * S + x)] = 1;
        }
      }
      annotation.mask = mask.data();
      const auto image = random_image(S, static_cast<uint64_t>(global));
      writer.append(fmt::format("s{}", global), "", image.data(), nullptr, &annotation);
      masks.push_back(mask);
      boxes.push_back(annotation.boxes);
    }
    manifest.shards.push_back(writer.close());
  }
  write_manifest(dir.path(), manifest);

  auto dataset = Dataset::open(dir.path(), {.verify_checksums = true});
  EXPECT_TRUE(dataset->annotations().masks && dataset->annotations().boxes);
  std::vector<uint8_t> mask(static_cast<size_t>(S * S));
  for (int64_t g = 0; g < 5; ++g) {
    dataset->read_mask(g, mask.data());
    EXPECT_EQ(mask, masks[static_cast<size_t>(g)]) << g;
    const auto got = dataset->boxes(g);
    ASSERT_EQ(got.size(), boxes[static_cast<size_t>(g)].size()) << g;
    for (size_t b = 0; b < got.size(); ++b) {
      EXPECT_EQ(got[b].x0, boxes[static_cast<size_t>(g)][b].x0);
      EXPECT_EQ(got[b].y0, boxes[static_cast<size_t>(g)][b].y0);
      EXPECT_EQ(got[b].x1, boxes[static_cast<size_t>(g)][b].x1);
      EXPECT_EQ(got[b].y1, boxes[static_cast<size_t>(g)][b].y1);
    }
  }

  const fs::path script = test::source_dir() / "tests/unit/io/read_dataset_h5py.py";
  const auto result = test::run_command(mgca::test::python() + " " + script.string() + " " + dir.path().string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto doc = nlohmann::json::parse(result.output);
  ASSERT_EQ(doc.at("mask_sha256").size(), 5u);
  for (size_t g = 0; g < 5; ++g) {
    EXPECT_EQ(doc["mask_sha256"][g], sha256_hex(masks[g].data(), masks[g].size()));
    ASSERT_EQ(doc["boxes"][g].size(), boxes[g].size());
    for (size_t b = 0; b < boxes[g].size(); ++b) {
      EXPECT_EQ(doc["boxes"][g][b], nlohmann::json({boxes[g][b].x0, boxes[g][b].y0, boxes[g][b].x1, boxes[g][b].y1}));
    }
  }
}

TEST(DatasetFile, BadAnnotationsAreErrorsAndBoxProblemsAreNamed) {
  TempDir dir;
  const auto image = random_image(8, 1);
  std::vector<uint8_t> mask(64, 0);
  ShardWriter writer(dir.path() / "a.h5", 8, {}, {true, true});
  EXPECT_THROW(writer.append("no-annotation", "", image.data()), Error);
  mask[5] = 2;
  SampleAnnotation bad_mask{mask.data(), {}};
  EXPECT_THROW(writer.append("bad-mask", "", image.data(), nullptr, &bad_mask), Error);
  mask[5] = 1;
  SampleAnnotation bad_box{mask.data(), {{2, 2, 9, 4}}};
  EXPECT_THROW(writer.append("bad-box", "", image.data(), nullptr, &bad_box), Error);
  EXPECT_EQ(box_problem({1, 1, 3, 3}, 8), "");
  EXPECT_EQ(box_problem({3, 1, 3, 3}, 8), "box has no area");
  EXPECT_EQ(box_problem({-1, 1, 3, 3}, 8), "box outside the image");
  EXPECT_EQ(box_problem({NAN, 1, 3, 3}, 8), "box coordinate is not a finite number");
  EXPECT_EQ(writer.count(), 0);

  // A shard without masks in a dataset whose manifest says it has them.
  ShardWriter plain(dir.path() / "b.h5", 8, {});
  plain.append("x", "", image.data());
  DatasetManifest manifest;
  manifest.source = "test";
  manifest.split = "all";
  manifest.image_size = 8;
  manifest.annotations.masks = true;
  manifest.shards.push_back(plain.close());
  write_manifest(dir.path(), manifest);
  try {
    Dataset::open(dir.path());
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("annotations"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace mgca::io
