// safetensors files (the Hugging Face format): 8-byte little-endian header
// length, a JSON header {"name": {"dtype": "F32", "shape": [..],
// "data_offsets": [begin, end]}, ..., "__metadata__": {"key": "string"}},
// then the raw little-endian data. Hugging Face, timm and torchvision weights
// converted to this format load through the model's weight mapping; our
// checkpoints store model weights this way so Python users can read them.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mgca/io/safetensors_header.h"

namespace mgca::io {

// The safetensors dtype names this reader and writer support, and their
// torch equivalents. Errors name the dtype; `context` (e.g. "tensor 'x' in
// f.safetensors") is put in front of the message.
torch::ScalarType scalar_type_from_dtype(const std::string& dtype, const std::string& context = "");
std::string dtype_from_scalar_type(torch::ScalarType type, const std::string& context = "");

// A safetensors file opened read-only and memory-mapped. Every structural
// problem (truncated file, bad JSON, overlapping or out-of-range offsets,
// unknown dtype, size not matching the shape) is an error naming the file
// and, where there is one, the tensor.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Tensor names in the order of their data in the file.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // error names the tensor if absent
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // Bytes of the JSON header (as stored, padding included) and of the data section.
  int64_t header_size() const { return header_.header_size; }
  int64_t data_size() const { return header_.data_size; }

  // A CPU tensor holding a copy of the data (owned, contiguous).
  torch::Tensor tensor(const std::string& name) const;
  // As tensor(), checking dtype and shape; the error names the tensor, the
  // expected and the found values.
  torch::Tensor tensor(const std::string& name, torch::ScalarType dtype,
                       const std::vector<int64_t>& shape) const;

 private:
  std::filesystem::path path_;
  SafetensorsHeader header_;
  struct Mapping;
  std::unique_ptr<Mapping> mapping_;
};

// Writes tensors (any device, any layout; written contiguous from CPU) and
// string metadata. Atomic: written to "<path>.tmp", fsynced, renamed.
void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads every tensor of a file into a name → tensor map.
std::map<std::string, torch::Tensor> load_safetensors(const std::filesystem::path& path);

}  // namespace mgca::io
