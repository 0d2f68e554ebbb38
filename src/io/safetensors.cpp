#include <fmt/ranges.h>
#include "mgca/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>
#include <set>

#include "mgca/util/error.h"
#include "mgca/util/files.h"

namespace mgca::io {
namespace {

using ordered_json = nlohmann::ordered_json;

struct DtypeEntry {
  const char* name;
  torch::ScalarType type;
};

// The torch type of every dtype safetensors_header.cpp supports (a unit test
// checks that the two tables agree on names and sizes).
constexpr DtypeEntry kTorchDtypes[] = {
    {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
    {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
    {"U8", torch::kUInt8},    {"BOOL", torch::kBool},
};

const DtypeEntry* find_dtype(const std::string& name) {
  for (const auto& entry : kTorchDtypes) {
    if (name == entry.name) return &entry;
  }
  return nullptr;
}

std::string prefix(const std::string& context) { return context.empty() ? "" : context + ": "; }

std::string errno_text() { return std::strerror(errno); }

// Levenshtein distance, for suggesting the names closest to a missing one.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), size_t{0});
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace

torch::ScalarType scalar_type_from_dtype(const std::string& dtype, const std::string& context) {
  const DtypeEntry* entry = find_dtype(dtype);
  MGCA_CHECK(entry != nullptr, "{}unknown or unsupported dtype '{}' (supported: {})",
             prefix(context), dtype, supported_dtypes());
  return entry->type;
}

std::string dtype_from_scalar_type(torch::ScalarType type, const std::string& context) {
  for (const auto& entry : kTorchDtypes) {
    if (entry.type == type) return entry.name;
  }
  MGCA_FAIL("{}torch dtype {} has no safetensors equivalent here (supported: {})",
            prefix(context), c10::toString(type), supported_dtypes());
}

// ---------------------------------------------------------------------------
// Reading

struct SafetensorsFile::Mapping {
  void* address = MAP_FAILED;
  size_t length = 0;
  ~Mapping() {
    if (address != MAP_FAILED) munmap(address, length);
  }
  const uint8_t* bytes() const { return static_cast<const uint8_t*>(address); }
};

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : path_(path), mapping_(std::make_unique<Mapping>()) {
  const std::string file = path.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  MGCA_CHECK(fd >= 0, "cannot open safetensors file {}: {}", file, errno_text());
  struct stat status {};
  if (::fstat(fd, &status) != 0) {
    const std::string reason = errno_text();
    ::close(fd);
    MGCA_FAIL("cannot stat {}: {}", file, reason);
  }
  if (!S_ISREG(status.st_mode)) {
    ::close(fd);
    MGCA_FAIL("{} is not a regular file", file);
  }
  const uint64_t file_size = static_cast<uint64_t>(status.st_size);
  if (file_size < 8) {
    ::close(fd);
    MGCA_FAIL("{} is truncated: {} bytes, too short for the 8-byte header length", file,
              file_size);
  }
  mapping_->length = file_size;
  mapping_->address = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const std::string mmap_error = errno_text();
  ::close(fd);  // the mapping keeps the file alive
  MGCA_CHECK(mapping_->address != MAP_FAILED, "cannot mmap {}: {}", file, mmap_error);
  header_ = parse_safetensors_header(mapping_->bytes(), file_size, file);
}

SafetensorsFile::~SafetensorsFile() = default;

std::vector<std::string> SafetensorsFile::names() const { return header_.order; }

bool SafetensorsFile::contains(const std::string& name) const { return header_.infos.count(name) != 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto found = header_.infos.find(name);
  if (found != header_.infos.end()) return found->second;
  std::vector<std::pair<size_t, std::string>> ranked;
  for (const auto& candidate : header_.order) ranked.emplace_back(edit_distance(name, candidate), candidate);
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::string> closest;
  for (size_t i = 0; i < ranked.size() && i < 5; ++i) closest.push_back("'" + ranked[i].second + "'");
  if (closest.empty()) {
    MGCA_FAIL("tensor '{}' not found in {}: the file holds no tensors", name, path_.string());
  }
  MGCA_FAIL("tensor '{}' not found in {} ({} tensors; closest names: {})", name, path_.string(),
            header_.order.size(), fmt::join(closest, ", "));
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& entry = info(name);
  const auto type = scalar_type_from_dtype(entry.dtype);
  torch::Tensor result = torch::empty(entry.shape, torch::TensorOptions().dtype(type));
  if (entry.num_bytes() == 0) return result;
  const uint8_t* source = mapping_->bytes() + 8 + header_.header_size + entry.data_begin;
  if (type == torch::kBool) {
    // Bytes other than 0/1 would be undefined behaviour as C++ bool.
    for (int64_t i = 0; i < entry.num_bytes(); ++i) {
      MGCA_CHECK(source[i] <= 1, "tensor '{}' in {}: BOOL element {} has byte value {}", name,
                 path_.string(), i, static_cast<int>(source[i]));
    }
  }
  std::memcpy(result.data_ptr(), source, static_cast<size_t>(entry.num_bytes()));
  return result;
}

torch::Tensor SafetensorsFile::tensor(const std::string& name, torch::ScalarType dtype,
                                      const std::vector<int64_t>& shape) const {
  const TensorInfo& entry = info(name);
  const std::string expected_dtype =
      dtype_from_scalar_type(dtype, fmt::format("tensor '{}' in {}", name, path_.string()));
  MGCA_CHECK(entry.dtype == expected_dtype && entry.shape == shape,
             "tensor '{}' in {}: expected {} {}, found {} {}", name, path_.string(), expected_dtype,
             shape_string(shape), entry.dtype, shape_string(entry.shape));
  return tensor(name);
}

std::map<std::string, torch::Tensor> load_safetensors(const std::filesystem::path& path) {
  SafetensorsFile file(path);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& name : file.names()) tensors.emplace(name, file.tensor(name));
  return tensors;
}

// ---------------------------------------------------------------------------
// Writing

namespace {

void write_all(int fd, const void* data, size_t length, const std::string& file) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  while (length > 0) {
    const ssize_t written = ::write(fd, bytes, length);
    if (written < 0 && errno == EINTR) continue;
    MGCA_CHECK(written > 0, "writing {} failed: {}", file, errno_text());
    bytes += written;
    length -= static_cast<size_t>(written);
  }
}

// Closes the fd and removes the temporary file unless committed.
struct TempFile {
  std::string path;
  int fd = -1;
  bool committed = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!committed) ::unlink(path.c_str());
  }
};

}  // namespace

void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  std::vector<torch::Tensor> contiguous;
  contiguous.reserve(tensors.size());
  ordered_json header = ordered_json::object();
  std::set<std::string> seen;
  int64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const std::string where = fmt::format("tensor '{}' for {}", name, file);
    MGCA_CHECK(!name.empty(), "{}: tensor names must not be empty", file);
    MGCA_CHECK(name != "__metadata__", "{}: '__metadata__' is reserved", where);
    MGCA_CHECK(seen.insert(name).second, "{}: the name is given twice", where);
    MGCA_CHECK(tensor.defined(), "{}: undefined tensor", where);
    torch::Tensor t = tensor.detach();
    if (t.is_sparse()) t = t.to_dense();
    t = t.to(torch::kCPU).contiguous();
    const std::string dtype = dtype_from_scalar_type(t.scalar_type(), where);
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    header[name] = ordered_json{{"dtype", dtype},
                                {"shape", t.sizes().vec()},
                                {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(std::move(t));
  }
  // After the tensors, keys sorted: the layout of the golden files the
  // reference library wrote, which the tests reproduce byte for byte.
  if (!metadata.empty()) {
    ordered_json meta = ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& error) {
    MGCA_FAIL("{}: cannot encode the header (names and metadata must be UTF-8): {}", file,
              error.what());
  }
  // Pad with spaces to a multiple of 8 so the data section is 8-byte aligned,
  // as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_length = text.size();

  TempFile tmp;
  tmp.path = file + ".tmp";
  tmp.fd = ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MGCA_CHECK(tmp.fd >= 0, "cannot create {}: {}", tmp.path, errno_text());
  write_all(tmp.fd, &header_length, 8, tmp.path);
  write_all(tmp.fd, text.data(), text.size(), tmp.path);
  for (const auto& t : contiguous) {
    write_all(tmp.fd, t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size(), tmp.path);
  }
  const int fd = tmp.fd;
  tmp.fd = -1;
  MGCA_CHECK(::close(fd) == 0, "closing {} failed: {}", tmp.path, errno_text());
  tmp.committed = true;  // commit_file removes it on failure
  util::commit_file(tmp.path, path);
}

}  // namespace mgca::io
