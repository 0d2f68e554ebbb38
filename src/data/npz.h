// NumPy .npz archives (zip of .npy arrays, stored or deflated) read with
// libzip: headers, whole numeric arrays, and row ranges of large arrays
// (streamed, so a rank keeps only its rows).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mgca::data {

struct NpyHeader {
  std::string dtype;            // kind + item size without byte order: "u1", "i8", "f4", "b1", ...
  std::vector<int64_t> shape;
  int64_t header_bytes = 0;     // bytes before the data
  int64_t item_size() const;
  int64_t count() const;        // product of shape
};

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<double> values;   // row-major
};

class NpzFile {
 public:
  explicit NpzFile(const std::filesystem::path& path);
  ~NpzFile();
  NpzFile(const NpzFile&) = delete;
  NpzFile& operator=(const NpzFile&) = delete;

  bool contains(const std::string& array) const;  // "train_images" for train_images.npy
  NpyHeader header(const std::string& array) const;
  // The whole array converted to double (integers, floats, bools).
  NpyArray read_numeric(const std::string& array) const;
  // Raw bytes of rows [begin, end) along the first axis.
  std::vector<uint8_t> read_rows(const std::string& array, int64_t begin, int64_t end) const;

 private:
  std::filesystem::path path_;
  void* zip_ = nullptr;  // zip_t*
};

// Parses an .npy header from its first bytes (errors name `what`).
NpyHeader parse_npy_header(const uint8_t* data, size_t size, const std::string& what);

}  // namespace mgca::data
