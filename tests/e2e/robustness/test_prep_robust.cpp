// `mgca prep` on image paths that are not image files, under 1 and 2 ranks:
// a folder, /dev/zero (endless), a FIFO (blocks a plain open), a file larger
// than --max-image-mb and a missing file are each a counted skip with its
// reason; the good rows are imported, rows in = imported + skipped, and
// summary.json is written. Every run has a timeout: a hang fails the test.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "mgca/build_config.h"
#include "mgca/data/import.h"
#include "process.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace mgca::test {
namespace {

constexpr const char* kReport = "\"The heart is normal in size. The lungs are clear.\"";

// Runs `command` with output in `log`; fails the test on a timeout.
int run_with_timeout(const std::string& command, const fs::path& log, double seconds) {
  Background process(command, log);
  const int code = process.wait(seconds);
  EXPECT_NE(code, -1) << "timed out after " << seconds << " s: " << command << "\n" << read_text_file(log);
  return code;
}

std::string mpirun(int np) {
  return std::string(MGCA_MPIEXEC) + " --allow-run-as-root --oversubscribe --bind-to none -np " + std::to_string(np) +
         " ";
}

class PrepRobust : public ::testing::TestWithParam<int> {};

TEST_P(PrepRobust, PathsThatAreNotImageFilesAreCountedSkips) {
  const int np = GetParam();
  TempDir dir("mgca-prep-robust");
  const fs::path good = shared_data_dir() / "cxr-samples" / "nih-00000001_000.png";
  fs::copy_file(good, dir / "good1.png");
  fs::copy_file(good, dir / "good2.png");
  fs::create_directory(dir / "a-folder.png");
  ASSERT_EQ(mkfifo((dir / "fifo.png").c_str(), 0600), 0);
  {
    std::ofstream big(dir / "big.png", std::ios::binary);
    big << std::string(3 << 20, 'x');  // 3 MB, over --max-image-mb 2
  }
  const std::vector<std::string> rows = {"good1.png", "a-folder.png", "/dev/zero", "fifo.png",
                                         "big.png",   "missing.png",  "good2.png"};
  {
    std::ofstream table(dir / "table.csv");
    table << "id,image_path,report\n";
    for (size_t i = 0; i < rows.size(); ++i) table << "row" << i << "," << rows[i] << "," << kReport << "\n";
  }
  const fs::path out = dir / "out";
  const int code = run_with_timeout(mpirun(np) + mgca_program().string() + " prep --format csv --in " +
                                        quote((dir / "table.csv").string()) + " --out " + quote(out.string()) +
                                        " --image-size 32 --max-image-mb 2 --comm-timeout 60",
                                    dir / "prep.log", 240);
  const std::string log = read_text_file(dir / "prep.log");
  ASSERT_EQ(code, 0) << log;
  ASSERT_TRUE(fs::exists(out / "summary.json")) << log;
  const auto summary = nlohmann::json::parse(read_text_file(out / "summary.json"));
  const auto& total = summary.at("total");
  const auto& skipped = total.at("skipped");
  EXPECT_EQ(total.at("imported").get<int>(), 2) << summary.dump(2);
  EXPECT_EQ(skipped.at(data::skip::kNotRegularFile).get<int>(), 3) << summary.dump(2);  // folder, /dev/zero, FIFO
  EXPECT_EQ(skipped.at(data::skip::kImageTooLarge).get<int>(), 1) << summary.dump(2);
  EXPECT_EQ(skipped.at(data::skip::kMissingImage).get<int>(), 1) << summary.dump(2);
  EXPECT_EQ(total.at("imported").get<int>() + total.at("skipped_total").get<int>(), static_cast<int>(rows.size()));
  const std::string examples = total.at("examples").dump();
  EXPECT_NE(examples.find("row1: "), std::string::npos) << examples;  // the row's id and why
  EXPECT_NE(examples.find("is a folder"), std::string::npos) << examples;
  EXPECT_NE(examples.find("is a FIFO"), std::string::npos) << examples;
  EXPECT_NE(examples.find("is a character device"), std::string::npos) << examples;
}

INSTANTIATE_TEST_SUITE_P(Ranks, PrepRobust, ::testing::Values(1, 2),
                         [](const auto& info) { return "np" + std::to_string(info.param); });

// Rows in = imported + skipped when a quote never closes: the bad row is a
// counted skip naming its line, and the rows after it are still imported.
TEST(PrepCsv, UnterminatedQuoteIsOneSkippedRowNotSwallowedRows) {
  TempDir dir("mgca-prep-csv");
  fs::copy_file(shared_data_dir() / "cxr-samples" / "nih-00000001_000.png", dir / "a.png");
  {
    std::ofstream table(dir / "table.csv");
    table << "id,image_path,report\n"
          << "r1,a.png," << kReport << "\n"
          << "r2,a.png,\"The heart is normal. This quote never closes.\n"
          << "r3,a.png," << kReport << "\n"
          << "r4,a.png,No acute disease in the chest today.\n";
  }
  const fs::path out = dir / "out";
  const int code = run_with_timeout(mgca_program().string() + " prep --format csv --in " +
                                        quote((dir / "table.csv").string()) + " --out " + quote(out.string()) +
                                        " --image-size 32",
                                    dir / "prep.log", 120);
  ASSERT_EQ(code, 0) << read_text_file(dir / "prep.log");
  const auto total = nlohmann::json::parse(read_text_file(out / "summary.json")).at("total");
  EXPECT_EQ(total.at("imported").get<int>(), 3) << total.dump(2);
  EXPECT_EQ(total.at("skipped").at(data::skip::kUnterminatedQuote).get<int>(), 1) << total.dump(2);
  EXPECT_NE(total.at("examples").dump().find("line 3"), std::string::npos) << total.dump(2);
}

}  // namespace
}  // namespace mgca::test
