// Parallel import under mpirun -np 1, 2, 4: every rank imports its block of
// a CSV table (with bad rows spread over the blocks); the datasets and the
// merged summary are those of the one-rank import, in input order.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "mgca/comm/communicator.h"
#include "mgca/data/image.h"
#include "mgca/data/import.h"
#include "mgca/io/dataset_file.h"
#include "support/test_support.h"

namespace mgca::data {
namespace {
namespace fs = std::filesystem;

TEST(ParallelImport, SameDatasetsForAnyRankCount) {
  auto world = comm::Communicator::world();
  const int rank = world->rank();
  std::unique_ptr<test::TempDir> temp;
  if (rank == 0) temp = std::make_unique<test::TempDir>("mgca-mpi-import");
  const fs::path dir = world->broadcast_string(rank == 0 ? temp->path().string() : "", 0);

  // 23 rows: every 5th names a missing image, every 7th has an empty report.
  const int rows = 23;
  if (rank == 0) {
    const fs::path samples = test::shared_data_dir() / "cxr-samples";
    std::string table = "image_path,report,split,Label\n";
    for (int i = 0; i < rows; ++i) {
      const std::string name = fmt::format("img{}.png", i);
      if (i % 5 != 4) fs::copy_file(samples / (i % 2 ? "nih-00000001_000.png" : "nih-00027426_000.png"), dir / name);
      const std::string report = i % 7 == 6 ? "" : fmt::format("finding number {} is stable", i);
      table += fmt::format("{},{},{},{}\n", name, report, i % 3 ? "train" : "test", i % 2);
    }
    test::write_text_file(dir / "table.csv", table);
  }
  world->barrier();

  ImportOptions options;
  options.format = "csv";
  options.in = dir / "table.csv";
  options.out = dir / "out";
  options.image_size = 32;
  options.shard_size = 3;
  options.threads = 2;
  const ImportResult result = run_import(*world, options);
  // Rows 4, 9, 14, 19 missing; rows 6, 13, 20 empty.
  EXPECT_EQ(result.total.imported, rows - 7);
  EXPECT_EQ(result.total.skipped.at(skip::kMissingImage), 4);
  EXPECT_EQ(result.total.skipped.at(skip::kEmptyReport), 3);

  for (const std::string split : {"train", "test"}) {
    auto dataset = io::Dataset::open(options.out / split, {.verify_checksums = true});
    std::vector<int> expected;
    for (int i = 0; i < rows; ++i) {
      if (i % 5 != 4 && i % 7 != 6 && (split == "test") == (i % 3 == 0)) expected.push_back(i);
    }
    ASSERT_EQ(dataset->size(), static_cast<int64_t>(expected.size())) << split;
    std::vector<uint8_t> image(32 * 32);
    for (size_t k = 0; k < expected.size(); ++k) {
      const int i = expected[k];
      EXPECT_EQ(dataset->id(static_cast<int64_t>(k)), fmt::format("img{}.png", i));
      EXPECT_EQ(dataset->report(static_cast<int64_t>(k)), fmt::format("finding number {} is stable", i));
      EXPECT_EQ(dataset->labels(static_cast<int64_t>(k))[0], static_cast<float>(i % 2));
      dataset->read_image(static_cast<int64_t>(k), image.data());
      std::vector<uint8_t> reference(32 * 32);
      resize_and_pad(read_image_file(dir / fmt::format("img{}.png", i)), 32, reference.data());
      EXPECT_EQ(image, reference) << split << " " << k;
    }
  }
  world->barrier();
}

}  // namespace
}  // namespace mgca::data
