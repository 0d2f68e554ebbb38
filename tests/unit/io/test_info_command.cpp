// `mgca info` through the built program: the table, the totals, checkpoint
// folders, and the exit codes for bad input.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "mgca/io/safetensors.h"
#include "support/test_support.h"

namespace mgca::io {
namespace {

namespace fs = std::filesystem;
using mgca::test::TempDir;

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "'" << (text) << "' lacks '" << (part) << "'"

test::CommandResult info(const std::string& arguments) {
  return test::run_command(test::mgca_program().string() + " info " + arguments);
}

void write_example(const fs::path& path) {
  save_safetensors(path,
                   {{"encoder.weight", torch::zeros({4, 3})},
                    {"encoder.bias", torch::zeros({4}, torch::kFloat64)},
                    {"step", torch::tensor(7, torch::kInt64)},
                    {"mask", torch::zeros({0, 5}, torch::kBool)}},
                   {{"format", "pt"}, {"config", std::string(300, 'x')}});
}

TEST(InfoCommand, PrintsMetadataTensorsAndTotals) {
  TempDir dir;
  const auto path = dir / "m.safetensors";
  write_example(path);
  const auto result = info(path.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto& out = result.output;
  EXPECT_CONTAINS(out, "metadata (2 entries):");
  EXPECT_CONTAINS(out, "  format: pt\n");
  EXPECT_CONTAINS(out, "(300 bytes; --full shows all)");
  EXPECT_CONTAINS(out, "tensors (4, in file order):");
  // name, dtype, shape, numel, bytes; columns padded to the longest name/shape.
  EXPECT_CONTAINS(out, "  encoder.weight  F32    [4, 3]            12              48\n");
  EXPECT_CONTAINS(out, "  encoder.bias    F64    [4]                4              32\n");
  EXPECT_CONTAINS(out, "  step            I64    []                 1               8\n");
  EXPECT_CONTAINS(out, "  mask            BOOL   [0, 5]             0               0\n");
  EXPECT_CONTAINS(out, "total: 4 tensors, 17 parameters, 88 bytes");
  EXPECT_CONTAINS(out, "  F32   12 parameters, 48 bytes\n");
  EXPECT_LT(out.find("encoder.weight"), out.find("encoder.bias"));  // file order, not sorted

  const auto full = info("--full " + path.string());
  EXPECT_CONTAINS(full.output, "  config: " + std::string(300, 'x') + "\n");
}

TEST(InfoCommand, CheckpointFolderShowsItsModel) {
  TempDir dir;
  fs::create_directories(dir / "step-100");
  write_example(dir / "step-100" / "model.safetensors");
  const auto result = info((dir / "step-100").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, (dir / "step-100" / "model.safetensors").string());
  EXPECT_CONTAINS(result.output, "total: 4 tensors, 17 parameters, 88 bytes");

  const auto empty = info(dir.path().string());  // a folder without model.safetensors
  EXPECT_EQ(empty.exit_code, 1) << empty.output;
  EXPECT_CONTAINS(empty.output, "is a folder without model.safetensors");
}

TEST(InfoCommand, BadInputExitsWithOneAndSaysWhy) {
  TempDir dir;
  const auto missing = info((dir / "nope.safetensors").string());
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_CONTAINS(missing.output, "nope.safetensors does not exist");

  test::write_text_file(dir / "junk.safetensors", "this is not a safetensors file");
  const auto junk = info((dir / "junk.safetensors").string());
  EXPECT_EQ(junk.exit_code, 1) << junk.output;
  EXPECT_CONTAINS(junk.output, "mgca info: error:");
  EXPECT_CONTAINS(junk.output, "junk.safetensors is truncated or not a safetensors file");

  const auto usage = test::run_command(test::mgca_program().string() + " info");
  EXPECT_EQ(usage.exit_code, 2) << usage.output;
}

}  // namespace
}  // namespace mgca::io
