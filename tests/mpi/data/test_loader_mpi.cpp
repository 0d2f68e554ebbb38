// The loader's contract under mpirun -np 1, 2, 4: at every step the ranks'
// batches, gathered in rank order, are byte for byte the one-rank batch of
// the same global size (after augmentation, for MGCA and ConVIRT); and a
// loader resumed at step k yields the batches of the uninterrupted run.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mgca/comm/communicator.h"
#include "mgca/data/dataset_output.h"
#include "mgca/data/loader.h"
#include "mgca/data/synth.h"
#include "support/test_support.h"

namespace mgca::data {
namespace {
namespace fs = std::filesystem;

// Compares bytes (NaN labels included) after gathering every rank's tensor.
torch::Tensor as_bytes(const torch::Tensor& t) {
  return t.contiguous().view({-1}).view(torch::kUInt8);
}

class LoaderMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    world_ = comm::Communicator::world();
    if (world_->rank() == 0) temp_ = std::make_unique<test::TempDir>("mgca-mpi-loader");
    dir_ = world_->broadcast_string(world_->rank() == 0 ? temp_->path().string() : "", 0);
    // Written by all ranks together (each its block), read by all.
    OutputSpec spec;
    spec.dir = dir_ / "synth";
    spec.source = "synth";
    spec.split = "train";
    spec.image_size = 64;
    spec.label_names = synth_label_names();
    spec.shard_size = 10;
    ParallelDatasetWriter writer(*world_, spec);
    SynthOptions synth;
    synth.image_size = 64;
    SynthSample sample;
    const int64_t n = 70, r = world_->rank(), w = world_->size();
    for (int64_t i = n * r / w; i < n * (r + 1) / w; ++i) {
      generate_synth_sample(synth, i, sample);
      writer.append(sample.id, sample.report, sample.image.data(), sample.labels.data());
    }
    writer.finish({});
    dataset_ = io::Dataset::open(spec.dir);
    tokenizer_ = std::make_shared<text::Tokenizer>(
        text::Tokenizer::from_vocab_file(test::shared_data_dir() / "vocab/bert-base-cased-vocab.txt"));
  }
  void TearDown() override { world_->barrier(); }

  LoaderOptions options(Pipeline pipeline, int rank, int world, int threads) const {
    LoaderOptions o;
    o.global_batch_size = 16;
    o.rank = rank;
    o.world_size = world;
    o.seed = 2024;
    o.augment.pipeline = pipeline;
    o.augment.crop_size = 56;
    o.augment.blur_kernel = 7;
    o.text = pipeline == Pipeline::Convirt ? TextMode::SampleSentence : TextMode::Full;
    o.max_length = 48;
    o.num_threads = threads;
    return o;
  }

  std::shared_ptr<comm::Communicator> world_;
  std::unique_ptr<test::TempDir> temp_;
  fs::path dir_;
  std::shared_ptr<io::Dataset> dataset_;
  std::shared_ptr<text::Tokenizer> tokenizer_;
};

TEST_F(LoaderMpi, RankBatchesGatherToTheOneRankBatch) {
  const int rank = world_->rank(), size = world_->size();
  for (const auto pipeline : {Pipeline::Mgca, Pipeline::Convirt}) {
    SCOPED_TRACE(pipeline_name(pipeline));
    // This rank's loader (thread count varies by rank) and, for reference,
    // the one-rank loader of the same global batch built in this process.
    Loader mine(dataset_, tokenizer_, options(pipeline, rank, size, 1 + rank % 3));
    Loader one(dataset_, tokenizer_, options(pipeline, 0, 1, 0));
    EXPECT_EQ(mine.steps_per_epoch(), 4);  // 70 / 16
    EXPECT_EQ(mine.local_batch_size(), 16 / size);
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      mine.start(epoch);
      one.start(epoch);
      int64_t steps = 0;
      while (auto batch = mine.next()) {
        const auto reference = one.next();
        ASSERT_TRUE(reference.has_value());
        ++steps;
        for (const auto& [ours, theirs] : std::vector<std::pair<torch::Tensor, torch::Tensor>>{
                 {batch->images, reference->images},
                 {batch->input_ids, reference->input_ids},
                 {batch->attention_mask, reference->attention_mask},
                 {batch->labels, reference->labels},
                 {batch->indices, reference->indices}}) {
          const auto gathered = world_->all_gather(as_bytes(ours));
          EXPECT_TRUE(torch::equal(gathered, as_bytes(theirs))) << "epoch " << epoch << " step " << batch->step;
        }
        // This rank's ids are its rows of the global batch.
        for (int64_t row = 0; row < batch->size(); ++row) {
          EXPECT_EQ(batch->ids[static_cast<size_t>(row)], reference->ids[static_cast<size_t>(rank * batch->size() + row)]);
        }
      }
      EXPECT_EQ(steps, 4);
      EXPECT_FALSE(one.next().has_value());
    }
  }
}

TEST_F(LoaderMpi, ResumeAtStepKGivesTheUninterruptedBatches) {
  const int rank = world_->rank(), size = world_->size();
  Loader uninterrupted(dataset_, tokenizer_, options(Pipeline::Convirt, rank, size, 2));
  std::vector<Batch> expected;
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    uninterrupted.start(epoch);
    while (auto batch = uninterrupted.next()) expected.push_back(std::move(*batch));
  }
  // "Restart" from a checkpoint at epoch 0 step 3 in a fresh loader.
  Loader resumed(dataset_, tokenizer_, options(Pipeline::Convirt, rank, size, 3));
  std::vector<Batch> got;
  resumed.start(0, 3);
  while (auto batch = resumed.next()) got.push_back(std::move(*batch));
  resumed.start(1);
  while (auto batch = resumed.next()) got.push_back(std::move(*batch));
  ASSERT_EQ(got.size(), expected.size() - 3);
  for (size_t i = 0; i < got.size(); ++i) {
    const Batch& a = got[i];
    const Batch& b = expected[i + 3];
    EXPECT_EQ(a.epoch, b.epoch);
    EXPECT_EQ(a.step, b.step);
    EXPECT_TRUE(torch::equal(as_bytes(a.images), as_bytes(b.images))) << i;
    EXPECT_TRUE(torch::equal(a.input_ids, b.input_ids)) << i;
    EXPECT_EQ(a.ids, b.ids);
  }
}

}  // namespace
}  // namespace mgca::data
