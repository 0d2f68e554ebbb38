// The loader in one process: epoch order, rank slices (several Loader
// objects with different ranks stand in for the ranks), thread-count
// independence, resume, text modes, tensors against the dataset, errors.
// The same contract under real mpirun is tests/mpi/data/test_loader_mpi.cpp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "mgca/comm/communicator.h"
#include "mgca/data/dataset_output.h"
#include "mgca/data/loader.h"
#include "mgca/data/synth.h"
#include "mgca/text/report.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::data {
namespace {
namespace fs = std::filesystem;

// Writes a synthetic dataset of n samples (S px) into dir.
void write_synth(const fs::path& dir, int64_t n, int64_t S, int64_t shard_size = 16) {
  auto single = comm::Communicator::single();
  OutputSpec spec;
  spec.dir = dir;
  spec.source = "synth";
  spec.split = "train";
  spec.image_size = S;
  spec.label_names = synth_label_names();
  spec.shard_size = shard_size;
  ParallelDatasetWriter writer(*single, spec);
  SynthOptions options;
  options.image_size = S;
  SynthSample sample;
  for (int64_t i = 0; i < n; ++i) {
    generate_synth_sample(options, i, sample);
    writer.append(sample.id, sample.report, sample.image.data(), sample.labels.data());
  }
  writer.finish({});
}

// Bytes of a tensor (float NaNs compare equal as bytes).
std::string bytes(const torch::Tensor& t) {
  const auto c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel() * c.element_size()));
}

void expect_same(const Batch& a, const Batch& b) {
  EXPECT_EQ(bytes(a.images), bytes(b.images));
  EXPECT_EQ(bytes(a.input_ids), bytes(b.input_ids));
  EXPECT_EQ(bytes(a.attention_mask), bytes(b.attention_mask));
  EXPECT_EQ(bytes(a.labels), bytes(b.labels));
  EXPECT_EQ(bytes(a.indices), bytes(b.indices));
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.texts, b.texts);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.step, b.step);
}

Batch concatenate(const std::vector<Batch>& parts) {
  Batch out = parts.front();
  std::vector<torch::Tensor> images, ids, mask, labels, indices;
  out.ids.clear();
  out.texts.clear();
  for (const auto& p : parts) {
    images.push_back(p.images);
    ids.push_back(p.input_ids);
    mask.push_back(p.attention_mask);
    labels.push_back(p.labels);
    indices.push_back(p.indices);
    out.ids.insert(out.ids.end(), p.ids.begin(), p.ids.end());
    out.texts.insert(out.texts.end(), p.texts.begin(), p.texts.end());
  }
  out.images = torch::cat(images);
  out.input_ids = torch::cat(ids);
  out.attention_mask = torch::cat(mask);
  out.labels = torch::cat(labels);
  out.indices = torch::cat(indices);
  return out;
}

class LoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir("mgca-loader");
    write_synth(dir_->path() / "synth", 50, 64);
    dataset_ = io::Dataset::open(dir_->path() / "synth");
    tokenizer_ = std::make_shared<text::Tokenizer>(
        text::Tokenizer::from_vocab_file(test::shared_data_dir() / "vocab/bert-base-uncased-vocab.txt",
                                         text::TokenizerOptions{.lower_case = true}));
  }
  static void TearDownTestSuite() {
    dataset_.reset();
    tokenizer_.reset();
    delete dir_;
  }
  static LoaderOptions options(Pipeline pipeline, int64_t batch, int rank = 0, int world = 1, int threads = 2) {
    LoaderOptions o;
    o.global_batch_size = batch;
    o.rank = rank;
    o.world_size = world;
    o.seed = 11;
    o.augment.pipeline = pipeline;
    o.augment.crop_size = 48;
    o.augment.blur_kernel = 7;
    o.max_length = 40;
    o.num_threads = threads;
    o.prefetch = 3;
    return o;
  }
  static std::vector<Batch> epoch(Loader& loader, int64_t e, int64_t from = 0) {
    loader.start(e, from);
    std::vector<Batch> out;
    while (auto batch = loader.next()) out.push_back(std::move(*batch));
    return out;
  }
  static test::TempDir* dir_;
  static std::shared_ptr<io::Dataset> dataset_;
  static std::shared_ptr<text::Tokenizer> tokenizer_;
};
test::TempDir* LoaderTest::dir_ = nullptr;
std::shared_ptr<io::Dataset> LoaderTest::dataset_;
std::shared_ptr<text::Tokenizer> LoaderTest::tokenizer_;

TEST_F(LoaderTest, EpochIsAPermutationAndBatchesMatchTheDataset) {
  Loader loader(dataset_, tokenizer_, options(Pipeline::Eval, 8));
  EXPECT_EQ(loader.steps_per_epoch(), 6);  // 50 / 8, the rest dropped
  const auto batches = epoch(loader, 0);
  ASSERT_EQ(batches.size(), 6u);
  std::set<int64_t> seen;
  for (const auto& batch : batches) {
    ASSERT_EQ(batch.size(), 8);
    EXPECT_EQ(batch.images.sizes(), (std::vector<int64_t>{8, 1, 48, 48}));
    EXPECT_EQ(batch.images.dtype(), torch::kFloat32);
    EXPECT_EQ(batch.input_ids.sizes(), (std::vector<int64_t>{8, 40}));
    EXPECT_EQ(batch.labels.sizes(), (std::vector<int64_t>{8, 7}));
    for (int64_t row = 0; row < 8; ++row) {
      const int64_t index = batch.indices[row].item<int64_t>();
      EXPECT_TRUE(seen.insert(index).second) << "index " << index << " twice";
      EXPECT_EQ(batch.ids[static_cast<size_t>(row)], dataset_->id(index));
      // MGCA text: the report's sentences joined by spaces, tokenised.
      std::string text = dataset_->report(index);
      std::replace(text.begin(), text.end(), '\n', ' ');
      EXPECT_EQ(batch.texts[static_cast<size_t>(row)], text);
      const auto encoding = tokenizer_->encode(text, 40);
      EXPECT_TRUE(torch::equal(batch.input_ids[row], torch::tensor(encoding.input_ids)));
      EXPECT_TRUE(torch::equal(batch.attention_mask[row], torch::tensor(encoding.attention_mask)));
      EXPECT_TRUE(torch::equal(batch.labels[row], torch::from_blob(const_cast<float*>(dataset_->labels(index)), {7})));
      // Eval images: the centre 48x48 of the stored 64x64, (v / 255 - 0.5) / 0.5.
      std::vector<uint8_t> stored(64 * 64);
      dataset_->read_image(index, stored.data());
      auto expected = torch::from_blob(stored.data(), {64, 64}, torch::kUInt8)
                          .slice(0, 8, 56)
                          .slice(1, 8, 56)
                          .to(torch::kFloat32)
                          .div(255)
                          .sub(0.5)
                          .div(0.5);
      EXPECT_TRUE(torch::equal(batch.images[row][0], expected));
    }
  }
  EXPECT_EQ(seen.size(), 48u);
  // Another epoch has another order; the same epoch the same one.
  const auto again = epoch(loader, 0);
  const auto next_epoch = epoch(loader, 1);
  EXPECT_EQ(bytes(again[0].indices), bytes(batches[0].indices));
  EXPECT_NE(bytes(next_epoch[0].indices), bytes(batches[0].indices));
  EXPECT_EQ(next_epoch[0].epoch, 1);
}

TEST_F(LoaderTest, RankSlicesUnionToTheOneRankBatchForAnyThreadCount) {
  for (const auto pipeline : {Pipeline::Mgca, Pipeline::Convirt}) {
    SCOPED_TRACE(pipeline_name(pipeline));
    auto one_options = options(pipeline, 12, 0, 1, 0);  // built in the calling thread
    one_options.text = pipeline == Pipeline::Convirt ? TextMode::SampleSentence : TextMode::Full;
    Loader one(dataset_, tokenizer_, one_options);
    const auto reference = epoch(one, 2);
    for (const int world : {2, 3, 4}) {
      std::vector<std::unique_ptr<Loader>> ranks;
      std::vector<std::vector<Batch>> per_rank;
      for (int r = 0; r < world; ++r) {
        auto o = options(pipeline, 12, r, world, /*threads=*/1 + r);
        o.text = one_options.text;
        ranks.push_back(std::make_unique<Loader>(dataset_, tokenizer_, o));
        per_rank.push_back(epoch(*ranks.back(), 2));
      }
      ASSERT_EQ(per_rank[0].size(), reference.size());
      for (size_t step = 0; step < reference.size(); ++step) {
        std::vector<Batch> parts;
        for (int r = 0; r < world; ++r) parts.push_back(per_rank[static_cast<size_t>(r)][step]);
        EXPECT_EQ(parts[0].size(), 12 / world);
        expect_same(concatenate(parts), reference[step]);
      }
    }
  }
}

TEST_F(LoaderTest, ResumeAtAnyStepGivesTheSameBatches) {
  auto o = options(Pipeline::Convirt, 8);
  o.text = TextMode::SampleSentence;
  Loader full(dataset_, tokenizer_, o);
  const auto uninterrupted = epoch(full, 3);
  for (const int64_t k : {1, 4, 5, 6}) {
    Loader resumed(dataset_, tokenizer_, o);
    const auto rest = epoch(resumed, 3, k);
    ASSERT_EQ(rest.size(), uninterrupted.size() - static_cast<size_t>(k));
    for (size_t i = 0; i < rest.size(); ++i) expect_same(rest[i], uninterrupted[static_cast<size_t>(k) + i]);
  }
  // Restarting in the middle of an epoch (batches in flight are dropped).
  full.start(3, 0);
  full.next();
  full.start(3, 2);
  auto batch = full.next();
  ASSERT_TRUE(batch.has_value());
  expect_same(*batch, uninterrupted[2]);
  EXPECT_EQ(full.step(), 3);
  EXPECT_EQ(full.make_batch(3, 4).ids, uninterrupted[4].ids);
}

TEST_F(LoaderTest, ConvirtSamplesOneSentencePerEpoch) {
  auto o = options(Pipeline::Convirt, 10);
  o.text = TextMode::SampleSentence;
  o.shuffle = false;
  Loader loader(dataset_, tokenizer_, o);
  const auto e0 = epoch(loader, 0), e1 = epoch(loader, 1);
  int changed = 0;
  for (size_t s = 0; s < e0.size(); ++s) {
    for (int64_t row = 0; row < 10; ++row) {
      const int64_t index = e0[s].indices[row].item<int64_t>();
      EXPECT_EQ(index, static_cast<int64_t>(s) * 10 + row);  // no shuffling
      const auto sentences = text::split_sentences(dataset_->report(index));
      const std::string& text = e0[s].texts[static_cast<size_t>(row)];
      EXPECT_NE(std::find(sentences.begin(), sentences.end(), text), sentences.end()) << text;
      changed += text != e1[s].texts[static_cast<size_t>(row)];
    }
  }
  EXPECT_GT(changed, 10);  // a new draw each epoch
  // ConVIRT images differ between epochs too, MGCA eval images do not.
  EXPECT_NE(bytes(e0[0].images), bytes(e1[0].images));
}

TEST_F(LoaderTest, KeepLastGivesRaggedRankSlices) {
  // 50 samples, B = 16 (4 ranks x 4): steps 0-2 full, step 3 has 2 samples,
  // both on rank 0.
  std::vector<int64_t> all;
  for (int r = 0; r < 4; ++r) {
    auto o = options(Pipeline::Eval, 16, r, 4, 1);
    o.drop_last = false;
    o.shuffle = false;
    Loader loader(dataset_, nullptr, o);
    EXPECT_EQ(loader.steps_per_epoch(), 4);
    const auto batches = epoch(loader, 0);
    ASSERT_EQ(batches.size(), 4u);
    EXPECT_EQ(batches[3].size(), r == 0 ? 2 : 0);
    EXPECT_FALSE(batches[0].input_ids.defined());  // no tokenizer
    for (const auto& b : batches) {
      for (int64_t i = 0; i < b.size(); ++i) all.push_back(b.indices[i].item<int64_t>());
    }
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), 50u);
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(all[static_cast<size_t>(i)], i);
}

TEST_F(LoaderTest, BadSettingsAndCorruptImagesAreClearErrors) {
  EXPECT_THROW(Loader(dataset_, tokenizer_, options(Pipeline::Mgca, 10, 0, 4)), Error);  // 10 % 4
  auto o = options(Pipeline::Mgca, 8);
  o.augment.crop_size = 65;
  EXPECT_THROW(Loader(dataset_, tokenizer_, o), Error);
  EXPECT_THROW(Loader(dataset_, tokenizer_, options(Pipeline::Mgca, 64)), Error);  // more than the dataset

  // A dataset with one corrupt image: the step that holds it fails with the
  // shard and index; the loader can be restarted.
  test::TempDir dir("mgca-loader-corrupt");
  write_synth(dir / "ds", 16, 32, 8);
  SynthOptions synth;
  synth.image_size = 32;
  SynthSample sample;
  generate_synth_sample(synth, 5, sample);
  const fs::path shard = dir / "ds" / "part-r00000-00000.h5";
  std::string data = test::read_text_file(shard);
  const size_t at = data.find(std::string(sample.image.begin(), sample.image.end()));
  ASSERT_NE(at, std::string::npos);
  data[at + 7] = static_cast<char>(data[at + 7] ^ 1);
  test::write_text_file(shard, data);
  auto corrupt = io::Dataset::open(dir / "ds", {.verify_checksums = false});  // the loader's own check
  auto bad = options(Pipeline::Mgca, 4);
  bad.augment.crop_size = 32;
  bad.shuffle = false;
  Loader loader(corrupt, tokenizer_, bad);
  loader.start(0);
  EXPECT_TRUE(loader.next().has_value());  // samples 0-3
  try {
    loader.next();  // samples 4-7
    FAIL() << "corrupt image not reported";
  } catch (const Error& error) {
    const std::string text = error.what();
    EXPECT_NE(text.find("part-r00000-00000.h5"), std::string::npos) << text;
    EXPECT_NE(text.find("image 5"), std::string::npos) << text;
    EXPECT_NE(text.find("dataset index 5"), std::string::npos) << text;
  }
  loader.start(0, 2);
  EXPECT_TRUE(loader.next().has_value());
}

}  // namespace
}  // namespace mgca::data
