// mgca info FILE: what a safetensors file (or a checkpoint folder holding
// model.safetensors) contains: metadata, one line per tensor, totals.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "command.h"
#include "mgca/io/safetensors.h"
#include "mgca/train/checkpoint_files.h"
#include "mgca/util/error.h"

namespace mgca::cli {
namespace {

namespace fs = std::filesystem;

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Metadata values are often whole JSON documents; show the start unless --full.
std::string shorten(const std::string& value, size_t limit) {
  std::string flat = value;
  std::replace(flat.begin(), flat.end(), '\n', ' ');
  if (limit == 0 || flat.size() <= limit) return flat;
  while (limit > 0 && (static_cast<unsigned char>(flat[limit]) & 0xC0) == 0x80) --limit;  // UTF-8 boundary
  return fmt::format("{}… ({} bytes; --full shows all)", flat.substr(0, limit), value.size());
}

fs::path resolve(const fs::path& given) {
  std::error_code error;
  MGCA_CHECK(fs::exists(given, error), "{} does not exist", given.string());
  if (fs::is_directory(given, error)) {
    const fs::path model = train::checkpoint_model_file(given);
    MGCA_CHECK(fs::is_regular_file(model, error),
               "{} is a folder without model.safetensors (not a checkpoint folder)", given.string());
    return model;
  }
  return given;
}

int run_info(int argc, char** argv) {
  CLI::App app{"Print the metadata and the tensors of a safetensors file or checkpoint folder",
               "mgca info"};
  std::string target;
  bool full = false;
  app.add_option("FILE", target, "a .safetensors file, or a folder holding model.safetensors")
      ->required();
  app.add_flag("--full", full, "print metadata values in full");
  if (const int code = parse_arguments(app, argc, argv); code >= 0) return code;

  const fs::path path = resolve(target);
  const io::SafetensorsFile file(path);
  const auto names = file.names();

  fmt::print("{}\n", path.string());
  fmt::print("  {} bytes: {} header + {} data\n", 8 + file.header_size() + file.data_size(),
             8 + file.header_size(), file.data_size());
  if (file.metadata().empty()) {
    fmt::print("\nmetadata: none\n");
  } else {
    fmt::print("\nmetadata ({} entries):\n", file.metadata().size());
    for (const auto& [key, value] : file.metadata()) {
      fmt::print("  {}: {}\n", key, shorten(value, full ? 0 : 160));
    }
  }

  size_t name_width = 4, shape_width = 5;
  for (const auto& name : names) {
    name_width = std::max(name_width, name.size());
    shape_width = std::max(shape_width, shape_text(file.info(name).shape).size());
  }
  fmt::print("\ntensors ({}, in file order):\n", names.size());
  fmt::print("  {:<{}}  {:<5}  {:<{}}  {:>12}  {:>14}\n", "name", name_width, "dtype", "shape",
             shape_width, "numel", "bytes");
  int64_t total_numel = 0, total_bytes = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> by_dtype;  // dtype → (numel, bytes)
  for (const auto& name : names) {
    const auto& info = file.info(name);
    fmt::print("  {:<{}}  {:<5}  {:<{}}  {:>12}  {:>14}\n", name, name_width, info.dtype,
               shape_text(info.shape), shape_width, info.numel(), info.num_bytes());
    total_numel += info.numel();
    total_bytes += info.num_bytes();
    by_dtype[info.dtype].first += info.numel();
    by_dtype[info.dtype].second += info.num_bytes();
  }
  fmt::print("\ntotal: {} tensors, {} parameters, {} bytes ({:.2f} MiB)\n", names.size(),
             total_numel, total_bytes, static_cast<double>(total_bytes) / (1024.0 * 1024.0));
  for (const auto& [dtype, counts] : by_dtype) {
    fmt::print("  {:<5} {} parameters, {} bytes\n", dtype, counts.first, counts.second);
  }
  return kExitOk;
}

const Registration info_registration{"info", "print the metadata and tensors of a safetensors file or checkpoint",
                                run_info};

}  // namespace
}  // namespace mgca::cli
