// ParallelDatasetWriter under mpirun -np 1, 2, 4: each rank writes its block,
// rank 0 writes the manifest, and the dataset is the same for every rank count.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "mgca/comm/communicator.h"
#include "mgca/data/dataset_output.h"
#include "mgca/data/synth.h"
#include "mgca/io/dataset_file.h"
#include "support/test_support.h"

namespace mgca::data {
namespace {

TEST(ParallelDatasetWriter, RanksWriteBlocksInOrder) {
  auto world = comm::Communicator::world();
  const int rank = world->rank(), size = world->size();
  // Rank 0 picks the folder; every rank writes into it.
  std::unique_ptr<test::TempDir> temp;
  if (rank == 0) temp = std::make_unique<test::TempDir>("mgca-mpi-writer");
  const std::filesystem::path dir = world->broadcast_string(rank == 0 ? temp->path().string() : "", 0);

  SynthOptions options;
  options.image_size = 32;
  const int64_t n = 37;  // not divisible by 2 or 4
  OutputSpec spec;
  spec.dir = dir / "ds";
  spec.source = "synth";
  spec.split = "train";
  spec.image_size = 32;
  spec.label_names = synth_label_names();
  spec.shard_size = 4;
  ParallelDatasetWriter writer(*world, spec);
  const int64_t begin = n * rank / size, end = n * (rank + 1) / size;
  SynthSample sample;
  ImportSummary summary;
  for (int64_t i = begin; i < end; ++i) {
    generate_synth_sample(options, i, sample);
    writer.append(sample.id, sample.report, sample.image.data(), sample.labels.data());
    ++summary.imported;
  }
  summary.skip("made-up reason", fmt::format("rank {}", rank));
  const ImportSummary merged = writer.finish(summary);
  EXPECT_EQ(merged.imported, n);
  EXPECT_EQ(merged.skipped.at("made-up reason"), size);

  auto dataset = io::Dataset::open(spec.dir, {.verify_checksums = true});
  ASSERT_EQ(dataset->size(), n);
  std::vector<uint8_t> image(32 * 32);
  for (int64_t i = 0; i < n; ++i) {
    generate_synth_sample(options, i, sample);
    dataset->read_image(i, image.data());
    ASSERT_EQ(image, sample.image) << "sample " << i;
    ASSERT_EQ(dataset->id(i), sample.id);
  }
  // Every rank's shards are listed, rank by rank.
  const auto& shards = dataset->manifest().shards;
  EXPECT_EQ(shards.front().file, "part-r00000-00000.h5");
  EXPECT_EQ(shards.back().file.substr(0, 11), fmt::format("part-r{:05d}", size - 1));
  world->barrier();  // everyone done reading before rank 0 removes the folder
}

}  // namespace
}  // namespace mgca::data
