// The safetensors header without torch (mgca/io/safetensors_header.h).
#include "mgca/io/safetensors_header.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "mgca/util/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

namespace mgca::io {
namespace {

using ordered_json = nlohmann::ordered_json;

// The reference implementation refuses headers above 100 MB; so do we, which
// also stops a corrupt length from making us read gigabytes of "JSON".
constexpr uint64_t kMaxHeaderSize = 100'000'000;

struct DtypeSize {
  const char* name;
  int64_t size;
};

// The supported dtypes; safetensors.cpp maps each to its torch type.
constexpr DtypeSize kDtypes[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
                                 {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};

// A non-negative JSON integer, or an error naming `what`.
int64_t json_size(const ordered_json& value, const std::string& what) {
  if (value.is_number_unsigned()) {
    const auto v = value.get<uint64_t>();
    MGCA_CHECK(v <= static_cast<uint64_t>(INT64_MAX), "{} is too large: {}", what, v);
    return static_cast<int64_t>(v);
  }
  if (value.is_number_integer()) {
    MGCA_FAIL("{} must not be negative: {}", what, value.dump());
  }
  MGCA_FAIL("{} must be a non-negative integer, found {}", what, value.dump());
}

}  // namespace

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

int64_t dtype_size(const std::string& dtype) {
  for (const auto& entry : kDtypes) {
    if (dtype == entry.name) return entry.size;
  }
  return 0;
}

std::string supported_dtypes() {
  std::string list;
  for (const auto& entry : kDtypes) {
    if (!list.empty()) list += ", ";
    list += entry.name;
  }
  return list;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size, const std::string& file) {
  SafetensorsHeader result;
  MGCA_CHECK(size >= 8, "{} is truncated: {} bytes, too short for the 8-byte header length", file, size);
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes, 8);  // little-endian host (static_assert above)
  MGCA_CHECK(header_length <= size - 8,
             "{} is truncated or not a safetensors file: header length {} bytes runs past the "
             "end of the file ({} bytes)",
             file, header_length, size);
  MGCA_CHECK(header_length <= kMaxHeaderSize, "{}: header length {} bytes exceeds the limit of {}",
             file, header_length, kMaxHeaderSize);
  MGCA_CHECK(header_length >= 2, "{}: header length {} bytes is too short for a JSON object",
             file, header_length);
  result.header_size = static_cast<int64_t>(header_length);
  result.data_size = static_cast<int64_t>(size - 8 - header_length);
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);

  // Parse, noticing duplicate top-level keys (JSON parsers keep one silently).
  std::set<std::string> top_keys;
  std::string duplicate;
  const auto callback = [&](int depth, nlohmann::json::parse_event_t event, ordered_json& value) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key) {
      const auto& key = value.get_ref<const std::string&>();
      if (!top_keys.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  ordered_json header;
  try {
    header = ordered_json::parse(header_begin, header_begin + header_length, callback);
  } catch (const nlohmann::json::exception& error) {
    MGCA_FAIL("{}: the header ({} bytes) is not valid JSON: {}", file, header_length, error.what());
  }
  MGCA_CHECK(header.is_object(), "{}: the header must be a JSON object, found {}", file,
             header.type_name());
  MGCA_CHECK(duplicate.empty(), "{}: the header names '{}' twice", file, duplicate);

  std::vector<std::pair<size_t, const TensorInfo*>> by_header_order;
  size_t position = 0;
  for (const auto& [key, value] : header.items()) {
    ++position;
    if (key == "__metadata__") {
      MGCA_CHECK(value.is_object(), "{}: __metadata__ must be an object of strings, found {}",
                 file, value.type_name());
      for (const auto& [meta_key, meta_value] : value.items()) {
        MGCA_CHECK(meta_value.is_string(), "{}: __metadata__ entry '{}' must be a string, found {}",
                   file, meta_key, meta_value.type_name());
        result.metadata[meta_key] = meta_value.get<std::string>();
      }
      continue;
    }
    const std::string where = fmt::format("tensor '{}' in {}", key, file);
    MGCA_CHECK(value.is_object(), "{}: entry must be an object with dtype, shape and data_offsets, found {}",
               where, value.type_name());
    TensorInfo info;
    info.name = key;
    MGCA_CHECK(value.contains("dtype") && value["dtype"].is_string(),
               "{}: missing or non-string 'dtype'", where);
    info.dtype = value["dtype"].get<std::string>();
    const int64_t element_size = dtype_size(info.dtype);
    MGCA_CHECK(element_size != 0, "{}: unknown or unsupported dtype '{}' (supported: {})", where,
               info.dtype, supported_dtypes());
    MGCA_CHECK(value.contains("shape") && value["shape"].is_array(), "{}: missing or non-array 'shape'",
               where);
    int64_t numel = 1;
    bool overflow = false;
    for (const auto& dim : value["shape"]) {
      info.shape.push_back(json_size(dim, where + ": shape entry"));
      overflow |= __builtin_mul_overflow(numel, info.shape.back(), &numel);
    }
    MGCA_CHECK(value.contains("data_offsets") && value["data_offsets"].is_array() &&
                   value["data_offsets"].size() == 2,
               "{}: 'data_offsets' must be an array [begin, end]", where);
    info.data_begin = json_size(value["data_offsets"][0], where + ": data_offsets begin");
    info.data_end = json_size(value["data_offsets"][1], where + ": data_offsets end");
    MGCA_CHECK(info.data_begin <= info.data_end, "{}: data_offsets [{}, {}] end before they begin",
               where, info.data_begin, info.data_end);
    MGCA_CHECK(info.data_end <= result.data_size,
               "{}: data_offsets [{}, {}] run past the data section ({} bytes); the file is "
               "truncated or corrupt",
               where, info.data_begin, info.data_end, result.data_size);
    int64_t expected_bytes = 0;
    overflow |= __builtin_mul_overflow(numel, element_size, &expected_bytes);
    MGCA_CHECK(!overflow, "{}: shape {} is too large", where, shape_string(info.shape));
    MGCA_CHECK(expected_bytes == info.num_bytes(),
               "{}: data_offsets [{}, {}] hold {} bytes, but {} {} needs {} bytes", where,
               info.data_begin, info.data_end, info.num_bytes(), info.dtype,
               shape_string(info.shape), expected_bytes);
    const auto inserted = result.infos.emplace(key, std::move(info));
    by_header_order.emplace_back(position, &inserted.first->second);
  }

  // Data order: by offsets, header order among equal offsets (empty tensors).
  std::stable_sort(by_header_order.begin(), by_header_order.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.second->data_begin, a.second->data_end) <
           std::make_pair(b.second->data_begin, b.second->data_end);
  });
  // Like the reference: the tensors tile the data section exactly, no
  // overlaps, no gaps, no trailing bytes.
  int64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (const auto& [unused, info] : by_header_order) {
    (void)unused;
    MGCA_CHECK(info->data_begin >= covered,
               "{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap in the data section", file,
               previous ? previous->name : "", previous ? previous->data_begin : 0, covered,
               info->name, info->data_begin, info->data_end);
    MGCA_CHECK(info->data_begin == covered,
               "{}: bytes [{}, {}) of the data section belong to no tensor (gap before '{}')",
               file, covered, info->data_begin, info->name);
    covered = info->data_end;
    previous = info;
    result.order.push_back(info->name);
  }
  MGCA_CHECK(covered == result.data_size,
             "{}: the data section has {} bytes but the tensors cover only {} (trailing bytes or "
             "missing header entries)",
             file, result.data_size, covered);
  return result;
}

SafetensorsHeader read_safetensors_header(const std::filesystem::path& path) {
  const std::string file = path.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  MGCA_CHECK(fd >= 0, "cannot open safetensors file {}: {}", file, std::strerror(errno));
  struct stat status {};
  const bool regular = ::fstat(fd, &status) == 0 && S_ISREG(status.st_mode);
  const auto size = static_cast<uint64_t>(regular ? status.st_size : 0);
  // A mapping reads pages on demand: the data section stays on disk.
  void* address = size > 0 ? ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0) : nullptr;
  const std::string mmap_error = std::strerror(errno);
  ::close(fd);
  MGCA_CHECK(regular, "{} is not a regular file", file);
  if (size == 0) return parse_safetensors_header(nullptr, 0, file);  // "truncated", naming the file
  MGCA_CHECK(address != MAP_FAILED, "cannot mmap {}: {}", file, mmap_error);
  struct Unmap {
    void* address;
    uint64_t size;
    ~Unmap() { ::munmap(address, size); }
  } unmap{address, size};
  return parse_safetensors_header(static_cast<const uint8_t*>(address), size, file);
}

}  // namespace mgca::io
