// The TensorBoard event writer (util/tensorboard.h): CRC-32C against the
// published check values, the TFRecord framing, and files read back by the
// real `tensorboard` package (tests/support/read_tensorboard.py): its record
// reader checks both CRCs of every record, protobuf re-serializes each parsed
// Event to the same bytes, and EventAccumulator returns the scalars written,
// dropping the steps a restart rewrites.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "mgca/util/tensorboard.h"
#include "support/test_support.h"

namespace mgca::util {
namespace {

TEST(Crc32c, MatchesPublishedCheckValues) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);  // the CRC catalogue's check value of CRC-32/ISCSI
  EXPECT_EQ(crc32c(""), 0u);
  // RFC 3720 (iSCSI), B.4.
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
}

uint32_t read_u32(const std::string& bytes, size_t at) {
  uint32_t value = 0;
  std::memcpy(&value, bytes.data() + at, 4);
  return value;
}

TEST(TfRecord, FramesLengthDataAndTheirMaskedCrcs) {
  const std::string data = "an event";
  const std::string record = tfrecord(data);
  ASSERT_EQ(record.size(), 8 + 4 + data.size() + 4);
  uint64_t length = 0;
  std::memcpy(&length, record.data(), 8);
  EXPECT_EQ(length, data.size());
  EXPECT_EQ(read_u32(record, 8), masked_crc32c(record.substr(0, 8)));
  EXPECT_EQ(record.substr(12, data.size()), data);
  EXPECT_EQ(read_u32(record, 12 + data.size()), masked_crc32c(data));
  const uint32_t crc = crc32c(data);
  EXPECT_EQ(masked_crc32c(data), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

// What tests/support/read_tensorboard.py finds in `folder`.
nlohmann::json read_back(const std::filesystem::path& folder) {
  const auto script = test::source_dir() / "tests" / "support" / "read_tensorboard.py";
  const auto out = folder.parent_path() / "read.json";
  const auto r = test::run_command(test::python() + " " + test::quote(script) + " " + test::quote(folder) + " " +
                                   test::quote(out));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(test::read_text_file(out));
}

std::vector<std::pair<int64_t, float>> series(const nlohmann::json& read, const std::string& tag) {
  std::vector<std::pair<int64_t, float>> out;
  for (const auto& point : read.at("scalars").at(tag)) {
    out.emplace_back(point.at(0).get<int64_t>(), static_cast<float>(point.at(1).get<double>()));
  }
  return out;
}

TEST(EventWriter, TensorboardReadsBackTagsStepsAndValues) {
  test::TempDir dir("mgca-tb");
  const auto folder = dir / "tb";
  std::string name;
  {
    EventWriter writer(folder, "node-a");
    name = writer.path().filename().string();
    writer.write_scalars(1, {{"loss", 2.5}, {"lr", 1e-4}, {"ranks_step_slowest", 1}});
    writer.write_scalars(2, {{"loss", 2.25}, {"lr", 2e-4}, {"ranks_step_slowest", 0}});
    writer.write_scalars(300000, {{"loss", 0.1}, {"lr", -3.0}, {"ranks_step_slowest", 0}});
  }
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  EXPECT_NE(name.find(".node-a."), std::string::npos) << name;

  const auto read = read_back(folder);
  const auto& records = read.at("records");
  ASSERT_EQ(records.size(), 4u) << read.dump();
  EXPECT_EQ(records[0].at("what"), "file_version");
  EXPECT_EQ(records[0].at("file_version"), "brain.Event:2");
  for (const auto& record : records) EXPECT_TRUE(record.at("canonical").get<bool>()) << record.dump();
  EXPECT_EQ(records[3].at("what"), "summary");
  EXPECT_EQ(records[3].at("step"), 300000);

  EXPECT_EQ(read.at("scalars").size(), 3u) << read.dump();
  using Series = std::vector<std::pair<int64_t, float>>;
  EXPECT_EQ(series(read, "loss"), (Series{{1, 2.5f}, {2, 2.25f}, {300000, 0.1f}}));
  EXPECT_EQ(series(read, "lr"), (Series{{1, 1e-4f}, {2, 2e-4f}, {300000, -3.0f}}));
  EXPECT_EQ(series(read, "ranks_step_slowest"), (Series{{1, 1.f}, {2, 0.f}, {300000, 0.f}}));
}

// A run logged steps 1..5, was checkpointed at 3 and resumed: the second
// file rewrites 4 and 5 and goes on to 6.
void write_interrupted_and_resumed(const std::filesystem::path& folder, bool session_start) {
  {
    EventWriter first(folder, "node-a");
    for (int step = 1; step <= 5; ++step) first.write_scalars(step, {{"loss", step}});
  }
  EventWriter second(folder, "node-a");
  if (session_start) second.write_session_start(4);
  for (int step = 4; step <= 6; ++step) second.write_scalars(step, {{"loss", 10 * step}});
}

TEST(EventWriter, SessionStartMakesTensorboardDropTheStepsARestartRewrites) {
  test::TempDir dir("mgca-tb");
  write_interrupted_and_resumed(dir / "tb", true);
  const auto read = read_back(dir / "tb");
  const auto& records = read.at("records");
  ASSERT_EQ(records.size(), 1u + 5u + 1u + 1u + 3u) << read.dump();
  EXPECT_NE(records[0].at("file"), records[6].at("file")) << "the second writer must start a new file";
  EXPECT_EQ(records[7].at("what"), "session_log");
  EXPECT_EQ(records[7].at("session_status"), 1);  // START
  EXPECT_TRUE(records[7].at("canonical").get<bool>());
  using Series = std::vector<std::pair<int64_t, float>>;
  EXPECT_EQ(series(read, "loss"), (Series{{1, 1.f}, {2, 2.f}, {3, 3.f}, {4, 40.f}, {5, 50.f}, {6, 60.f}}));
}

// Why the START event: with file_version 2 TensorBoard purges only at one,
// and otherwise shows a rewritten step twice.
TEST(EventWriter, WithoutSessionStartTensorboardKeepsBothCopiesOfARewrittenStep) {
  test::TempDir dir("mgca-tb");
  write_interrupted_and_resumed(dir / "tb", false);
  const auto read = read_back(dir / "tb");
  using Series = std::vector<std::pair<int64_t, float>>;
  EXPECT_EQ(series(read, "loss"),
            (Series{{1, 1.f}, {2, 2.f}, {3, 3.f}, {4, 4.f}, {5, 5.f}, {4, 40.f}, {5, 50.f}, {6, 60.f}}));
}

TEST(EventWriter, RemoveEventFilesLeavesOtherFiles) {
  test::TempDir dir("mgca-tb");
  { EventWriter writer(dir / "tb", "node-a"); }
  test::write_text_file(dir / "tb" / "notes.txt", "kept");
  remove_event_files(dir / "tb");
  std::vector<std::string> left;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "tb")) {
    left.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(left, std::vector<std::string>{"notes.txt"});
}

}  // namespace
}  // namespace mgca::util
