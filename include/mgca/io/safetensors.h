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

// The safetensors dtype names this reader and writer support, and their
// torch equivalents. Errors name the dtype; `context` (e.g. "tensor 'x' in
// f.safetensors") is put in front of the message.
torch::ScalarType scalar_type_from_dtype(const std::string& dtype, const std::string& context = "");
std::string dtype_from_scalar_type(torch::ScalarType type, const std::string& context = "");
int64_t dtype_size(const std::string& dtype);  // bytes per element; 0 for an unknown name

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
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Bytes of the JSON header (as stored, padding included) and of the data section.
  int64_t header_size() const { return header_size_; }
  int64_t data_size() const { return data_size_; }

  // A CPU tensor holding a copy of the data (owned, contiguous).
  torch::Tensor tensor(const std::string& name) const;
  // As tensor(), checking dtype and shape; the error names the tensor, the
  // expected and the found values.
  torch::Tensor tensor(const std::string& name, torch::ScalarType dtype,
                       const std::vector<int64_t>& shape) const;

 private:
  std::filesystem::path path_;
  std::map<std::string, TensorInfo> infos_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> order_;  // names in data order
  int64_t header_size_ = 0;
  int64_t data_size_ = 0;
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
