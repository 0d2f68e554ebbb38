// Shared by the fuzz targets: a parser's input written to a file in a
// per-process scratch folder (parsers of files take a path), and the rule
// that a parser may reject input only with an mgca::Error; any other
// exception escapes and libFuzzer reports it as a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace mgca::fuzz {

inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto path = std::filesystem::temp_directory_path() / ("mgca-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
    return path;
  }();
  return dir;
}

inline std::filesystem::path write_input(const std::string& name, const uint8_t* data, size_t size) {
  const auto path = scratch_dir() / name;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Targets whose parser reads several files take them from one input, split
// at each kPartSeparator line: part 0, part 1, ... (a seed corpus file is
// its parts joined with that line). Parts past the input are absent.
inline constexpr const char* kPartSeparator = "\n--8<--\n";

inline std::vector<std::string> split_parts(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string separator = kPartSeparator;
  std::vector<std::string> parts;
  size_t begin = 0;
  for (size_t at; (at = text.find(separator, begin)) != std::string::npos; begin = at + separator.size()) {
    parts.push_back(text.substr(begin, at - begin));
  }
  parts.push_back(text.substr(begin));
  return parts;
}

// A fresh, empty folder in the scratch folder (a parser that lists a folder
// must not see the previous input's files).
inline std::filesystem::path fresh_dir(const std::string& name) {
  const auto path = scratch_dir() / name;
  std::filesystem::remove_all(path);
  std::filesystem::create_directories(path);
  return path;
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

}  // namespace mgca::fuzz
