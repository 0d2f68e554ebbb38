// The safetensors header, parsed and validated without torch: the format's
// knowledge (dtype names and sizes, the header rules) lives here, shared by
// SafetensorsFile (safetensors.h) and the fuzz target (fuzz/).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace mgca::io {

struct TensorInfo {
  std::string name;
  std::string dtype;  // safetensors spelling: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;
  int64_t data_begin = 0;  // byte offsets into the data section
  int64_t data_end = 0;

  int64_t numel() const;  // product of shape (1 for a 0-d scalar)
  int64_t num_bytes() const { return data_end - data_begin; }
};

// Bytes per element of a supported dtype name; 0 for an unknown name.
int64_t dtype_size(const std::string& dtype);
// "F64, F32, ...": the supported dtype names, for error messages.
std::string supported_dtypes();
// "[2, 3]": a shape as the error messages print it.
std::string shape_string(const std::vector<int64_t>& shape);

struct SafetensorsHeader {
  std::map<std::string, TensorInfo> infos;
  std::map<std::string, std::string> metadata;
  std::vector<std::string> order;  // tensor names in data order
  int64_t header_size = 0;         // bytes of the JSON header, padding included
  int64_t data_size = 0;           // bytes of the data section
};

// Validates the whole header of a safetensors file held in `bytes` (all
// `size` bytes of it): length within the file (≤ 100 MB), a JSON object with
// unique names, string metadata, known dtypes, non-negative shapes, offsets
// whose size equals numel × dtype size, tensors tiling the data section
// exactly. Every failure is an mgca::Error naming `file` and the tensor.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size, const std::string& file);

// The validated header of the file at `path`, mapped read-only: only the
// header's pages are read, not the tensor data. Errors name the file.
SafetensorsHeader read_safetensors_header(const std::filesystem::path& path);

}  // namespace mgca::io
