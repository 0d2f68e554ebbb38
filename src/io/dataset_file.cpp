// HDF5 dataset shards and the dataset.json manifest (docs/data-format.md).
// Uses the HDF5 C API: Debian's library is built thread-safe for it, while
// the C++ wrapper is not thread-safe in any build.
#include "mgca/io/dataset_file.h"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

#include "mgca/util/error.h"
#include "mgca/util/files.h"

namespace mgca::io {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int64_t kImagesPerWrite = 32;

// HDF5 prints its error stack to stderr by default; we turn that off (per
// thread: the setting is thread-local in thread-safe builds) and put the
// stack's messages into our error instead.
void quiet_hdf5() {
  thread_local bool done = false;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    done = true;
  }
}

std::string hdf5_errors() {
  std::string text;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* error, void* data) -> herr_t {
        auto* out = static_cast<std::string*>(data);
        if (!out->empty()) out->append("; ");
        out->append(error->desc ? error->desc : "?");
        if (error->func_name) out->append(" (").append(error->func_name).append(")");
        return 0;
      },
      &text);
  H5Eclear2(H5E_DEFAULT);
  return text.empty() ? "no HDF5 error message" : text;
}

// Owns one HDF5 identifier.
class Hid {
 public:
  Hid() = default;
  Hid(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Hid() { reset(); }
  Hid(Hid&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
  Hid& operator=(Hid&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      close_ = other.close_;
      other.id_ = -1;
    }
    return *this;
  }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  hid_t get() const { return id_; }
  hid_t release() {
    const hid_t id = id_;
    id_ = -1;
    return id;
  }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// Checks an HDF5 return value (negative = failure); `what` names the file and object.
#define H5_CHECK(expr, ...)                                                                  \
  do {                                                                                       \
    if ((expr) < 0) MGCA_FAIL("{}: {}", ::fmt::format(__VA_ARGS__), hdf5_errors());          \
  } while (0)

Hid checked(hid_t id, herr_t (*close)(hid_t), const std::string& what) {
  if (id < 0) MGCA_FAIL("{}: {}", what, hdf5_errors());
  return Hid(id, close);
}

Hid vlen_string_type() {
  Hid type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  return type;
}

void write_strings(hid_t file, const char* name, const std::vector<std::string>& values,
                   const std::string& where) {
  const hsize_t dims[1] = {values.size()};
  Hid space = checked(H5Screate_simple(1, dims, nullptr), H5Sclose, where);
  Hid type = vlen_string_type();
  Hid dataset = checked(H5Dcreate2(file, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                                   H5P_DEFAULT),
                        H5Dclose, fmt::format("{}: creating '{}'", where, name));
  if (values.empty()) return;
  std::vector<const char*> pointers(values.size());
  for (size_t i = 0; i < values.size(); ++i) pointers[i] = values[i].c_str();
  H5_CHECK(H5Dwrite(dataset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, pointers.data()),
           "{}: writing '{}'", where, name);
}

std::vector<std::string> read_strings(hid_t owner, const char* name, bool attribute,
                                      const std::string& where) {
  Hid object = attribute ? checked(H5Aopen(owner, name, H5P_DEFAULT), H5Aclose,
                                   fmt::format("{}: attribute '{}'", where, name))
                         : checked(H5Dopen2(owner, name, H5P_DEFAULT), H5Dclose,
                                   fmt::format("{}: dataset '{}'", where, name));
  Hid space = attribute ? Hid(H5Aget_space(object.get()), H5Sclose)
                        : Hid(H5Dget_space(object.get()), H5Sclose);
  Hid stored = attribute ? Hid(H5Aget_type(object.get()), H5Tclose)
                         : Hid(H5Dget_type(object.get()), H5Tclose);
  MGCA_CHECK(H5Tget_class(stored.get()) == H5T_STRING && H5Tis_variable_str(stored.get()) > 0,
             "{}: '{}' must hold variable-length strings", where, name);
  MGCA_CHECK(H5Sget_simple_extent_ndims(space.get()) == 1, "{}: '{}' must be one-dimensional",
             where, name);
  hsize_t count = 0;
  H5Sget_simple_extent_dims(space.get(), &count, nullptr);
  std::vector<std::string> values(count);
  if (count == 0) return values;
  Hid type = vlen_string_type();
  std::vector<char*> pointers(count, nullptr);
  const herr_t status = attribute ? H5Aread(object.get(), type.get(), pointers.data())
                                  : H5Dread(object.get(), type.get(), H5S_ALL, H5S_ALL,
                                            H5P_DEFAULT, pointers.data());
  H5_CHECK(status, "{}: reading '{}'", where, name);
  for (hsize_t i = 0; i < count; ++i) values[i] = pointers[i] ? pointers[i] : "";
#if H5_VERSION_GE(1, 12, 0)
  H5Treclaim(type.get(), space.get(), H5P_DEFAULT, pointers.data());
#else
  H5Dvlen_reclaim(type.get(), space.get(), H5P_DEFAULT, pointers.data());
#endif
  return values;
}

void write_scalar_attribute(hid_t owner, const char* name, int64_t value, const std::string& where) {
  Hid space = checked(H5Screate(H5S_SCALAR), H5Sclose, where);
  Hid attribute = checked(H5Acreate2(owner, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT,
                                     H5P_DEFAULT),
                          H5Aclose, fmt::format("{}: attribute '{}'", where, name));
  H5_CHECK(H5Awrite(attribute.get(), H5T_NATIVE_INT64, &value), "{}: writing attribute '{}'",
           where, name);
}

int64_t read_scalar_attribute(hid_t owner, const char* name, const std::string& where) {
  MGCA_CHECK(H5Aexists(owner, name) > 0, "{}: attribute '{}' is missing (not a dataset shard?)",
             where, name);
  Hid attribute = checked(H5Aopen(owner, name, H5P_DEFAULT), H5Aclose,
                          fmt::format("{}: attribute '{}'", where, name));
  int64_t value = 0;
  H5_CHECK(H5Aread(attribute.get(), H5T_NATIVE_INT64, &value), "{}: reading attribute '{}'", where,
           name);
  return value;
}

void write_string_attribute_array(hid_t owner, const char* name,
                                  const std::vector<std::string>& values, const std::string& where) {
  const hsize_t dims[1] = {values.size()};
  Hid space = checked(H5Screate_simple(1, dims, nullptr), H5Sclose, where);
  Hid type = vlen_string_type();
  Hid attribute = checked(H5Acreate2(owner, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                          H5Aclose, fmt::format("{}: attribute '{}'", where, name));
  std::vector<const char*> pointers(values.size());
  for (size_t i = 0; i < values.size(); ++i) pointers[i] = values[i].c_str();
  H5_CHECK(H5Awrite(attribute.get(), type.get(), pointers.data()), "{}: writing attribute '{}'",
           where, name);
}

std::string shard_where(const fs::path& path) { return fmt::format("shard '{}'", path.string()); }

// [0, S, S] growable uint8 dataset, one S×S plane per chunk with Fletcher32:
// the layout of 'images' (which the reader's fast path relies on) and 'masks'.
Hid create_plane_dataset(hid_t file, const char* name, int64_t image_size, const std::string& where) {
  const hsize_t S = static_cast<hsize_t>(image_size);
  const hsize_t dims[3] = {0, S, S}, max_dims[3] = {H5S_UNLIMITED, S, S}, chunk[3] = {1, S, S};
  Hid space = checked(H5Screate_simple(3, dims, max_dims), H5Sclose, where);
  Hid dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, where);
  H5_CHECK(H5Pset_chunk(dcpl.get(), 3, chunk), "{}: chunking '{}'", where, name);
  H5_CHECK(H5Pset_fletcher32(dcpl.get()), "{}: Fletcher32", where);
  // Every chunk is written in full: no fill values needed.
  H5_CHECK(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), "{}: fill time", where);
  return checked(H5Dcreate2(file, name, H5T_STD_U8LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                 H5Dclose, fmt::format("{}: creating '{}'", where, name));
}

// Writes planes [first, first + count) of a plane dataset from `data`.
void write_planes(hid_t dataset, const char* name, int64_t image_size, int64_t first, int64_t count,
                  const uint8_t* data, const std::string& where) {
  const hsize_t S = static_cast<hsize_t>(image_size);
  const hsize_t new_dims[3] = {static_cast<hsize_t>(first + count), S, S};
  H5_CHECK(H5Dset_extent(dataset, new_dims), "{}: growing '{}' to {}", where, name, first + count);
  Hid file_space = checked(H5Dget_space(dataset), H5Sclose, where);
  const hsize_t start[3] = {static_cast<hsize_t>(first), 0, 0};
  const hsize_t block[3] = {static_cast<hsize_t>(count), S, S};
  H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, block, nullptr),
           "{}: selecting '{}'", where, name);
  Hid memory_space = checked(H5Screate_simple(3, block, nullptr), H5Sclose, where);
  H5_CHECK(H5Dwrite(dataset, H5T_NATIVE_UINT8, memory_space.get(), file_space.get(), H5P_DEFAULT, data),
           "{}: writing '{}' {}..{}", where, name, first, first + count - 1);
}

// A 1-D or 2-D chunked, Fletcher32-checksummed numeric dataset written at once.
void write_table(hid_t file, const char* name, hid_t file_type, hid_t memory_type, int64_t rows,
                 int64_t columns, const void* data, const std::string& where) {
  const int rank = columns > 0 ? 2 : 1;
  const hsize_t dims[2] = {static_cast<hsize_t>(rows), static_cast<hsize_t>(std::max<int64_t>(columns, 1))};
  const hsize_t max_dims[2] = {H5S_UNLIMITED, dims[1]};
  const hsize_t chunk[2] = {std::clamp<hsize_t>(dims[0], 1, 4096), dims[1]};
  Hid space = checked(H5Screate_simple(rank, dims, max_dims), H5Sclose, where);
  Hid dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, where);
  H5_CHECK(H5Pset_chunk(dcpl.get(), rank, chunk), "{}: chunking '{}'", where, name);
  H5_CHECK(H5Pset_fletcher32(dcpl.get()), "{}: Fletcher32", where);
  Hid dataset = checked(H5Dcreate2(file, name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                        H5Dclose, fmt::format("{}: creating '{}'", where, name));
  if (rows > 0) {
    H5_CHECK(H5Dwrite(dataset.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "{}: writing '{}'",
             where, name);
  }
}

// Reads a whole numeric dataset after checking its shape.
template <typename T>
std::vector<T> read_table(hid_t file, const char* name, hid_t memory_type, std::vector<hsize_t> expected,
                          const std::string& where) {
  MGCA_CHECK(H5Lexists(file, name, H5P_DEFAULT) > 0, "{}: dataset '{}' is missing", where, name);
  Hid dataset = checked(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose, fmt::format("{}: opening '{}'", where, name));
  Hid space(H5Dget_space(dataset.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  // expected[0] == 0 means "any number of rows".
  bool matches = dims.size() == expected.size();
  for (size_t d = 0; matches && d < dims.size(); ++d) matches = expected[d] == 0 ? d == 0 : dims[d] == expected[d];
  MGCA_CHECK(matches, "{}: '{}' has shape [{}], expected [{}]", where, name, fmt::join(dims, ", "),
             fmt::join(expected, ", "));
  size_t total = 1;
  for (const hsize_t d : dims) total *= static_cast<size_t>(d);
  std::vector<T> values(total);
  if (total > 0) {
    H5_CHECK(H5Dread(dataset.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
             "{}: reading '{}'", where, name);
  }
  return values;
}

}  // namespace

std::string box_problem(const Box& box, int64_t image_size) {
  const float S = static_cast<float>(image_size);
  if (!std::isfinite(box.x0) || !std::isfinite(box.y0) || !std::isfinite(box.x1) || !std::isfinite(box.y1)) {
    return "box coordinate is not a finite number";
  }
  if (!(box.x1 > box.x0) || !(box.y1 > box.y0)) return "box has no area";
  if (box.x0 < 0 || box.y0 < 0 || box.x1 > S || box.y1 > S) return "box outside the image";
  return "";
}

// ---------------------------------------------------------------- manifest

int64_t DatasetManifest::num_samples() const {
  int64_t total = 0;
  for (const auto& shard : shards) total += shard.count;
  return total;
}

DatasetManifest read_manifest(const fs::path& dir) {
  const fs::path file = dir / kManifestFileName;
  std::ifstream in(file);
  MGCA_CHECK(in.good(), "dataset '{}': cannot open {} (not a dataset folder?)", dir.string(),
             kManifestFileName);
  json doc;
  try {
    doc = json::parse(in);
  } catch (const json::exception& error) {
    MGCA_FAIL("'{}': invalid JSON: {}", file.string(), error.what());
  }
  const auto require = [&](const char* key) -> const json& {
    MGCA_CHECK(doc.is_object() && doc.contains(key), "'{}': key '{}' is missing", file.string(), key);
    return doc.at(key);
  };
  DatasetManifest manifest;
  try {
    MGCA_CHECK(require("format").get<std::string>() == "mgca-dataset",
               "'{}': key 'format' must be \"mgca-dataset\"", file.string());
    manifest.format_version = require("format_version").get<int>();
    MGCA_CHECK(manifest.format_version >= 1 && manifest.format_version <= kDatasetFormatVersion,
               "'{}': format_version {} is not supported (this build reads 1..{})", file.string(),
               manifest.format_version, kDatasetFormatVersion);
    manifest.source = require("source").get<std::string>();
    manifest.split = require("split").get<std::string>();
    manifest.image_size = require("image_size").get<int64_t>();
    MGCA_CHECK(manifest.image_size > 0, "'{}': key 'image_size' must be positive", file.string());
    manifest.label_names = require("label_names").get<std::vector<std::string>>();
    if (doc.contains("annotations")) {
      for (const auto& kind : doc.at("annotations").get<std::vector<std::string>>()) {
        if (kind == "masks") {
          manifest.annotations.masks = true;
        } else if (kind == "boxes") {
          manifest.annotations.boxes = true;
        } else {
          MGCA_FAIL("'{}': key 'annotations': unknown kind '{}' (masks, boxes)", file.string(), kind);
        }
      }
    }
    for (const auto& entry : require("shards")) {
      ShardInfo shard;
      shard.file = entry.at("file").get<std::string>();
      shard.count = entry.at("count").get<int64_t>();
      shard.bytes = entry.at("bytes").get<int64_t>();
      shard.sha256 = entry.at("sha256").get<std::string>();
      MGCA_CHECK(!shard.file.empty() && shard.file.find('/') == std::string::npos && shard.count >= 0,
                 "'{}': bad shard entry {}", file.string(), entry.dump());
      manifest.shards.push_back(std::move(shard));
    }
    if (doc.contains("num_samples")) {
      MGCA_CHECK(doc.at("num_samples").get<int64_t>() == manifest.num_samples(),
                 "'{}': num_samples {} differs from the sum of shard counts {}", file.string(),
                 doc.at("num_samples").get<int64_t>(), manifest.num_samples());
    }
    manifest.info_json = doc.contains("info") ? doc.at("info").dump() : "{}";
  } catch (const json::exception& error) {
    MGCA_FAIL("'{}': {}", file.string(), error.what());
  }
  return manifest;
}

void write_manifest(const fs::path& dir, const DatasetManifest& manifest) {
  json doc = json::object();
  doc["format"] = "mgca-dataset";
  doc["format_version"] = manifest.format_version;
  doc["source"] = manifest.source;
  doc["split"] = manifest.split;
  doc["image_size"] = manifest.image_size;
  doc["num_samples"] = manifest.num_samples();
  doc["label_names"] = manifest.label_names;
  if (manifest.annotations.masks || manifest.annotations.boxes) {
    doc["annotations"] = json::array();
    if (manifest.annotations.masks) doc["annotations"].push_back("masks");
    if (manifest.annotations.boxes) doc["annotations"].push_back("boxes");
  }
  doc["shards"] = json::array();
  for (const auto& shard : manifest.shards) {
    doc["shards"].push_back(
        {{"file", shard.file}, {"count", shard.count}, {"bytes", shard.bytes}, {"sha256", shard.sha256}});
  }
  try {
    doc["info"] = json::parse(manifest.info_json.empty() ? "{}" : manifest.info_json);
  } catch (const json::exception& error) {
    MGCA_FAIL("dataset '{}': manifest info is not valid JSON: {}", dir.string(), error.what());
  }
  util::write_file_atomic(dir / kManifestFileName, doc.dump(2) + "\n");
}

// ---------------------------------------------------------------- writer

ShardWriter::ShardWriter(const fs::path& path, int64_t image_size, std::vector<std::string> label_names,
                         AnnotationKinds annotations)
    : path_(path), temp_path_(path.string() + ".tmp"), image_size_(image_size),
      label_names_(std::move(label_names)), annotations_(annotations) {
  quiet_hdf5();
  const std::string where = shard_where(path_);
  MGCA_CHECK(image_size_ > 0, "{}: image size must be positive, got {}", where, image_size_);
  const std::set<std::string> unique(label_names_.begin(), label_names_.end());
  MGCA_CHECK(unique.size() == label_names_.size() && !unique.count(""),
             "{}: label names must be distinct and non-empty", where);
  Hid file = checked(H5Fcreate(temp_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                     H5Fclose, fmt::format("{}: cannot create '{}'", where, temp_path_.string()));
  Hid images = create_plane_dataset(file.get(), "images", image_size_, where);
  if (annotations_.masks) masks_ = create_plane_dataset(file.get(), "masks", image_size_, where).release();
  image_buffer_.reserve(static_cast<size_t>(kImagesPerWrite * image_size_ * image_size_));
  images_ = images.release();
  file_ = file.release();
}

ShardWriter::~ShardWriter() {
  if (closed_) return;
  if (masks_ >= 0) H5Dclose(masks_);
  if (images_ >= 0) H5Dclose(images_);
  if (file_ >= 0) H5Fclose(file_);
  std::error_code ignored;
  fs::remove(temp_path_, ignored);
}

void ShardWriter::append(std::string_view id, std::string_view report, const uint8_t* image,
                         const float* labels, const SampleAnnotation* annotation) {
  MGCA_CHECK(!closed_, "{}: append after close", shard_where(path_));
  MGCA_CHECK(!id.empty(), "{}: sample {} has an empty id", shard_where(path_), count_);
  MGCA_CHECK(id.find('\0') == std::string_view::npos && report.find('\0') == std::string_view::npos,
             "{}: sample '{}': id and report must not contain NUL bytes", shard_where(path_), id);
  MGCA_CHECK(label_names_.empty() || labels != nullptr, "{}: sample '{}' needs {} labels",
             shard_where(path_), id, label_names_.size());
  const int64_t pixels = image_size_ * image_size_;
  if (annotations_.masks || annotations_.boxes) {
    MGCA_CHECK(annotation != nullptr, "{}: sample '{}' needs its annotation (masks: {}, boxes: {})",
               shard_where(path_), id, annotations_.masks, annotations_.boxes);
  }
  if (annotations_.masks) {
    MGCA_CHECK(annotation->mask != nullptr, "{}: sample '{}' needs a mask", shard_where(path_), id);
    MGCA_CHECK(std::all_of(annotation->mask, annotation->mask + pixels, [](uint8_t v) { return v <= 1; }),
               "{}: sample '{}': mask values must be 0 or 1", shard_where(path_), id);
  }
  if (annotations_.boxes) {
    for (const Box& box : annotation->boxes) {
      const std::string problem = box_problem(box, image_size_);
      MGCA_CHECK(problem.empty(), "{}: sample '{}': {} ({}, {}, {}, {})", shard_where(path_), id, problem,
                 box.x0, box.y0, box.x1, box.y1);
    }
  }
  image_buffer_.insert(image_buffer_.end(), image, image + pixels);
  if (annotations_.masks) mask_buffer_.insert(mask_buffer_.end(), annotation->mask, annotation->mask + pixels);
  if (annotations_.boxes) {
    for (const Box& box : annotation->boxes) boxes_.insert(boxes_.end(), {box.x0, box.y0, box.x1, box.y1});
    box_offsets_.push_back(static_cast<int64_t>(boxes_.size() / 4));
  }
  ids_.emplace_back(id);
  reports_.emplace_back(report);
  if (!label_names_.empty()) labels_.insert(labels_.end(), labels, labels + label_names_.size());
  ++count_;
  if (count_ - images_written_ >= kImagesPerWrite) flush_images();
}

void ShardWriter::flush_images() {
  const int64_t pending = count_ - images_written_;
  if (pending == 0) return;
  const std::string where = shard_where(path_);
  write_planes(images_, "images", image_size_, images_written_, pending, image_buffer_.data(), where);
  if (masks_ >= 0) write_planes(masks_, "masks", image_size_, images_written_, pending, mask_buffer_.data(), where);
  images_written_ = count_;
  image_buffer_.clear();
  mask_buffer_.clear();
}

ShardInfo ShardWriter::close() {
  MGCA_CHECK(!closed_, "{}: closed twice", shard_where(path_));
  const std::string where = shard_where(path_);
  flush_images();
  Hid images(images_, H5Dclose);
  Hid masks(masks_, H5Dclose);
  Hid file(file_, H5Fclose);
  images_ = masks_ = file_ = -1;
  write_strings(file.get(), "ids", ids_, where);
  write_strings(file.get(), "reports", reports_, where);
  if (!label_names_.empty()) {
    write_table(file.get(), "labels", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, count_,
                static_cast<int64_t>(label_names_.size()), labels_.data(), where);
    write_string_attribute_array(file.get(), "label_names", label_names_, where);
  }
  if (annotations_.boxes) {
    write_table(file.get(), "boxes", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, box_offsets_.back(), 4, boxes_.data(),
                where);
    write_table(file.get(), "box_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, count_ + 1, 0,
                box_offsets_.data(), where);
  }
  write_scalar_attribute(file.get(), "format_version", kDatasetFormatVersion, where);
  write_scalar_attribute(file.get(), "image_size", image_size_, where);
  images.reset();
  masks.reset();
  H5_CHECK(H5Fclose(file.release()), "{}: closing", where);
  closed_ = true;
  util::commit_file(temp_path_, path_);
  ShardInfo info;
  info.file = path_.filename().string();
  info.count = count_;
  info.bytes = static_cast<int64_t>(fs::file_size(path_));
  info.sha256 = sha256_file(path_);
  ids_.clear();
  reports_.clear();
  labels_.clear();
  boxes_.clear();
  box_offsets_.assign(1, 0);
  return info;
}

ShardedWriter::ShardedWriter(fs::path dir, std::string prefix, int64_t image_size,
                             std::vector<std::string> label_names, int64_t shard_size,
                             AnnotationKinds annotations)
    : dir_(std::move(dir)), prefix_(std::move(prefix)), image_size_(image_size),
      shard_size_(shard_size), label_names_(std::move(label_names)), annotations_(annotations) {
  MGCA_CHECK(shard_size_ > 0, "shard size must be positive, got {}", shard_size_);
  MGCA_CHECK(fs::is_directory(dir_), "output folder '{}' does not exist", dir_.string());
}

void ShardedWriter::append(std::string_view id, std::string_view report, const uint8_t* image,
                           const float* labels, const SampleAnnotation* annotation) {
  if (current_ && current_->count() >= shard_size_) done_.push_back(current_->close());
  if (!current_ || current_->count() >= shard_size_) {
    const std::string name = fmt::format("{}-{:05d}.h5", prefix_, done_.size());
    current_ = std::make_unique<ShardWriter>(dir_ / name, image_size_, label_names_, annotations_);
  }
  current_->append(id, report, image, labels, annotation);
  ++count_;
}

std::vector<ShardInfo> ShardedWriter::finish() {
  if (current_) done_.push_back(current_->close());
  current_.reset();
  return std::move(done_);
}

// ---------------------------------------------------------------- reader

ShardReader::ShardReader(const fs::path& path) : path_(path) {
  quiet_hdf5();
  const std::string where = shard_where(path_);
  MGCA_CHECK(fs::is_regular_file(path_), "{}: no such file", where);
  Hid file = checked(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose,
                     fmt::format("{}: not a readable HDF5 file", where));
  const int64_t version = read_scalar_attribute(file.get(), "format_version", where);
  MGCA_CHECK(version >= 1 && version <= kDatasetFormatVersion,
             "{}: format_version {} is not supported (this build reads 1..{})", where, version,
             kDatasetFormatVersion);
  image_size_ = read_scalar_attribute(file.get(), "image_size", where);
  MGCA_CHECK(image_size_ > 0, "{}: image_size must be positive", where);
  if (H5Aexists(file.get(), "label_names") > 0) {
    label_names_ = read_strings(file.get(), "label_names", true, where);
  }

  MGCA_CHECK(H5Lexists(file.get(), "images", H5P_DEFAULT) > 0, "{}: dataset 'images' is missing", where);
  Hid images = checked(H5Dopen2(file.get(), "images", H5P_DEFAULT), H5Dclose,
                       fmt::format("{}: opening 'images'", where));
  {
    Hid type(H5Dget_type(images.get()), H5Tclose);
    MGCA_CHECK(H5Tget_class(type.get()) == H5T_INTEGER && H5Tget_size(type.get()) == 1 &&
                   H5Tget_sign(type.get()) == H5T_SGN_NONE,
               "{}: 'images' must be uint8", where);
    Hid space(H5Dget_space(images.get()), H5Sclose);
    hsize_t dims[3] = {0, 0, 0};
    MGCA_CHECK(H5Sget_simple_extent_ndims(space.get()) == 3, "{}: 'images' must be [n, S, S]", where);
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);
    MGCA_CHECK(dims[1] == static_cast<hsize_t>(image_size_) && dims[2] == dims[1],
               "{}: 'images' is [{}, {}, {}], expected [n, {}, {}]", where, dims[0], dims[1],
               dims[2], image_size_, image_size_);
    count_ = static_cast<int64_t>(dims[0]);
  }
  ids_ = read_strings(file.get(), "ids", false, where);
  reports_ = read_strings(file.get(), "reports", false, where);
  MGCA_CHECK(static_cast<int64_t>(ids_.size()) == count_ && static_cast<int64_t>(reports_.size()) == count_,
             "{}: {} images but {} ids and {} reports", where, count_, ids_.size(), reports_.size());
  if (!label_names_.empty()) {
    MGCA_CHECK(H5Lexists(file.get(), "labels", H5P_DEFAULT) > 0,
               "{}: attribute 'label_names' present but dataset 'labels' missing", where);
    labels_ = read_table<float>(file.get(), "labels", H5T_NATIVE_FLOAT,
                                {static_cast<hsize_t>(count_), label_names_.size()}, where);
  }
  annotations_.boxes = H5Lexists(file.get(), "boxes", H5P_DEFAULT) > 0;
  if (annotations_.boxes) {
    box_offsets_ = read_table<int64_t>(file.get(), "box_offsets", H5T_NATIVE_INT64,
                                       {static_cast<hsize_t>(count_ + 1)}, where);
    boxes_ = read_table<float>(file.get(), "boxes", H5T_NATIVE_FLOAT, {0, 4}, where);
    const int64_t num_boxes = static_cast<int64_t>(boxes_.size() / 4);
    MGCA_CHECK(box_offsets_.front() == 0 && box_offsets_.back() == num_boxes &&
                   std::is_sorted(box_offsets_.begin(), box_offsets_.end()),
               "{}: 'box_offsets' must rise from 0 to the {} rows of 'boxes'", where, num_boxes);
  }
  annotations_.masks = H5Lexists(file.get(), "masks", H5P_DEFAULT) > 0;
  if (annotations_.masks) {
    Hid masks = checked(H5Dopen2(file.get(), "masks", H5P_DEFAULT), H5Dclose,
                        fmt::format("{}: opening 'masks'", where));
    Hid space(H5Dget_space(masks.get()), H5Sclose);
    hsize_t dims[3] = {0, 0, 0};
    MGCA_CHECK(H5Sget_simple_extent_ndims(space.get()) == 3, "{}: 'masks' must be [n, S, S]", where);
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);
    MGCA_CHECK(static_cast<int64_t>(dims[0]) == count_ && dims[1] == static_cast<hsize_t>(image_size_) &&
                   dims[2] == dims[1],
               "{}: 'masks' is [{}, {}, {}], expected [{}, {}, {}]", where, dims[0], dims[1], dims[2],
               count_, image_size_, image_size_);
    // Masks are read through HDF5 (its own handle on the file: the image
    // fast path may close the library's handle below).
    h5_masks_file_ = checked(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, where).release();
    h5_masks_ = checked(H5Dopen2(h5_masks_file_, "masks", H5P_DEFAULT), H5Dclose, where).release();
  }

  // Fast path: one image per chunk with exactly the Fletcher32 filter (what
  // ShardWriter writes). Anything else goes through H5Dread.
  bool direct = false;
  {
    Hid dcpl(H5Dget_create_plist(images.get()), H5Pclose);
    hsize_t chunk[3] = {0, 0, 0};
    if (H5Pget_layout(dcpl.get()) == H5D_CHUNKED && H5Pget_chunk(dcpl.get(), 3, chunk) == 3 &&
        chunk[0] == 1 && chunk[1] == static_cast<hsize_t>(image_size_) && chunk[2] == chunk[1] &&
        H5Pget_nfilters(dcpl.get()) == 1) {
      unsigned flags = 0;
      size_t num_values = 0;
      const H5Z_filter_t filter =
          H5Pget_filter2(dcpl.get(), 0, &flags, &num_values, nullptr, 0, nullptr, nullptr);
      direct = filter == H5Z_FILTER_FLETCHER32;
    }
  }
#if H5_VERSION_GE(1, 10, 5)  // H5Dget_chunk_info_by_coord arrived in 1.10.5
  if (direct) {
    const uint64_t expected = static_cast<uint64_t>(image_size_ * image_size_) + 4;
    chunk_offsets_.resize(static_cast<size_t>(count_));
    for (int64_t i = 0; i < count_; ++i) {
      const hsize_t offset[3] = {static_cast<hsize_t>(i), 0, 0};
      unsigned filter_mask = 0;
      haddr_t address = HADDR_UNDEF;
      hsize_t size = 0;
      H5_CHECK(H5Dget_chunk_info_by_coord(images.get(), offset, &filter_mask, &address, &size),
               "{}: locating image {}", where, i);
      MGCA_CHECK(address != HADDR_UNDEF, "{}: image {} was never written", where, i);
      MGCA_CHECK(filter_mask == 0 && size == expected,
                 "{}: image {}: chunk of {} bytes with filter mask {}, expected {} bytes checksummed",
                 where, i, size, filter_mask, expected);
      chunk_offsets_[static_cast<size_t>(i)] = address;
    }
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    MGCA_CHECK(fd_ >= 0, "{}: cannot open: {}", where, std::strerror(errno));
    return;
  }
#else
  (void)direct;
#endif
  h5_images_ = images.release();
  h5_file_ = file.release();
}

ShardReader::~ShardReader() {
  if (fd_ >= 0) ::close(fd_);
  if (h5_masks_ >= 0) H5Dclose(h5_masks_);
  if (h5_masks_file_ >= 0) H5Fclose(h5_masks_file_);
  if (h5_images_ >= 0) H5Dclose(h5_images_);
  if (h5_file_ >= 0) H5Fclose(h5_file_);
}

void ShardReader::check_index(int64_t index) const {
  MGCA_CHECK(index >= 0 && index < count_, "{}: index {} out of range [0, {})", shard_where(path_),
             index, count_);
}

namespace {

// Sample `index` of a uint8 [n, S, S] dataset (images, masks) through HDF5.
void read_square(hid_t dataset, const char* what, const fs::path& path, int64_t size, int64_t index,
                 const std::string& id, uint8_t* out) {
  quiet_hdf5();
  const hsize_t S = static_cast<hsize_t>(size);
  Hid file_space(H5Dget_space(dataset), H5Sclose);
  const hsize_t start[3] = {static_cast<hsize_t>(index), 0, 0}, block[3] = {1, S, S};
  H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, block, nullptr),
           "{}: selecting {} {}", shard_where(path), what, index);
  Hid memory_space(H5Screate_simple(3, block, nullptr), H5Sclose);
  H5_CHECK(H5Dread(dataset, H5T_NATIVE_UINT8, memory_space.get(), file_space.get(), H5P_DEFAULT, out),
           "{}: {} {} (id '{}') could not be read", shard_where(path), what, index, id);
}

}  // namespace

void ShardReader::read_image(int64_t index, uint8_t* out) const {
  check_index(index);
  const size_t bytes = static_cast<size_t>(image_size_ * image_size_);
  if (fd_ >= 0) {
    uint8_t stored[4];
    const off_t offset = static_cast<off_t>(chunk_offsets_[static_cast<size_t>(index)]);
    const size_t total = bytes + 4;  // the chunk: image bytes, then the checksum
    size_t done = 0;
    while (done < total) {
      iovec rest[2];
      int parts = 0;
      if (done < bytes) {
        rest[parts++] = {out + done, bytes - done};
        rest[parts++] = {stored, 4};
      } else {
        rest[parts++] = {stored + (done - bytes), total - done};
      }
      const ssize_t got = ::preadv(fd_, rest, parts, offset + static_cast<off_t>(done));
      if (got < 0 && errno == EINTR) continue;
      MGCA_CHECK(got > 0, "{}: image {}: read failed at byte {}: {}", shard_where(path_), index,
                 offset + static_cast<off_t>(done), got < 0 ? std::strerror(errno) : "end of file");
      done += static_cast<size_t>(got);
    }
    const uint32_t stored_sum = uint32_t{stored[0]} | (uint32_t{stored[1]} << 8) |
                                (uint32_t{stored[2]} << 16) | (uint32_t{stored[3]} << 24);
    const uint32_t computed = hdf5_fletcher32(out, bytes);
    // HDF5 before 1.6.3 stored the two 16-bit halves byte-swapped; it accepts both.
    const uint32_t reversed = ((computed & 0x00ff00ffu) << 8) | ((computed >> 8) & 0x00ff00ffu);
    MGCA_CHECK(stored_sum == computed || stored_sum == reversed,
               "{}: image {} (id '{}') is corrupt: Fletcher32 checksum {:08x} stored, {:08x} computed",
               shard_where(path_), index, ids_[static_cast<size_t>(index)], stored_sum, computed);
    return;
  }
  read_square(h5_images_, "image", path_, image_size_, index, ids_[static_cast<size_t>(index)], out);
}

void ShardReader::read_mask(int64_t index, uint8_t* out) const {
  check_index(index);
  MGCA_CHECK(h5_masks_ >= 0, "{}: the shard has no masks", shard_where(path_));
  read_square(h5_masks_, "mask", path_, image_size_, index, ids_[static_cast<size_t>(index)], out);
}

std::vector<Box> ShardReader::boxes(int64_t index) const {
  check_index(index);
  MGCA_CHECK(annotations_.boxes, "{}: the shard has no boxes", shard_where(path_));
  std::vector<Box> out;
  for (int64_t b = box_offsets_[static_cast<size_t>(index)]; b < box_offsets_[static_cast<size_t>(index) + 1]; ++b) {
    const float* row = boxes_.data() + 4 * b;
    out.push_back({row[0], row[1], row[2], row[3]});
  }
  return out;
}

const std::string& ShardReader::id(int64_t index) const {
  check_index(index);
  return ids_[static_cast<size_t>(index)];
}

const std::string& ShardReader::report(int64_t index) const {
  check_index(index);
  return reports_[static_cast<size_t>(index)];
}

const float* ShardReader::labels(int64_t index) const {
  check_index(index);
  if (label_names_.empty()) return nullptr;
  return labels_.data() + static_cast<size_t>(index) * label_names_.size();
}

// ---------------------------------------------------------------- dataset

std::shared_ptr<Dataset> Dataset::open(const fs::path& dir, const DatasetOpenOptions& options) {
  std::shared_ptr<Dataset> dataset(new Dataset());
  dataset->dir_ = dir;
  dataset->manifest_ = read_manifest(dir);
  const auto& manifest = dataset->manifest_;
  dataset->offsets_.push_back(0);
  std::set<std::string> files;
  for (const auto& info : manifest.shards) {
    MGCA_CHECK(files.insert(info.file).second, "dataset '{}': shard '{}' listed twice", dir.string(),
               info.file);
    const fs::path path = dir / info.file;
    auto reader = std::make_unique<ShardReader>(path);
    MGCA_CHECK(reader->size() == info.count, "shard '{}': {} samples, the manifest says {}",
               path.string(), reader->size(), info.count);
    MGCA_CHECK(reader->image_size() == manifest.image_size,
               "shard '{}': image size {}, the manifest says {}", path.string(),
               reader->image_size(), manifest.image_size);
    MGCA_CHECK(reader->label_names() == manifest.label_names,
               "shard '{}': label names differ from the manifest's", path.string());
    MGCA_CHECK(reader->annotations() == manifest.annotations,
               "shard '{}': annotations (masks {}, boxes {}) differ from the manifest's (masks {}, boxes {})",
               path.string(), reader->annotations().masks, reader->annotations().boxes,
               manifest.annotations.masks, manifest.annotations.boxes);
    if (options.verify_checksums) {
      std::error_code error;
      const auto bytes = static_cast<int64_t>(fs::file_size(path, error));
      MGCA_CHECK(!error, "shard '{}': {}", path.string(), error.message());
      MGCA_CHECK(bytes == info.bytes,
                 "shard '{}' holds {} bytes, the manifest '{}' says {}: the file was changed or cut short since it "
                 "was written; import the dataset again (mgca prep or mgca synth)",
                 path.string(), bytes, (dir / kManifestFileName).string(), info.bytes);
      const std::string digest = sha256_file(path);
      MGCA_CHECK(digest == info.sha256,
                 "shard '{}': SHA-256 {} differs from the manifest's {} ('{}'): the file was changed since it was "
                 "written (a corrupt disk or an edit); import the dataset again (mgca prep or mgca synth)",
                 path.string(), digest, info.sha256, (dir / kManifestFileName).string());
    }
    dataset->offsets_.push_back(dataset->offsets_.back() + info.count);
    dataset->shards_.push_back(std::move(reader));
  }
  dataset->size_ = dataset->offsets_.back();
  return dataset;
}

std::pair<int64_t, int64_t> Dataset::locate(int64_t index) const {
  MGCA_CHECK(index >= 0 && index < size_, "dataset '{}': index {} out of range [0, {})",
             dir_.string(), index, size_);
  const auto it = std::upper_bound(offsets_.begin(), offsets_.end(), index);
  const int64_t shard = static_cast<int64_t>(it - offsets_.begin()) - 1;
  return {shard, index - offsets_[static_cast<size_t>(shard)]};
}

void Dataset::read_image(int64_t index, uint8_t* out) const {
  const auto [shard, local] = locate(index);
  try {
    shards_[static_cast<size_t>(shard)]->read_image(local, out);
  } catch (const Error& error) {
    MGCA_FAIL("{} [dataset index {}]", error.message(), index);
  }
}

const std::string& Dataset::id(int64_t index) const {
  const auto [shard, local] = locate(index);
  return shards_[static_cast<size_t>(shard)]->id(local);
}

const std::string& Dataset::report(int64_t index) const {
  const auto [shard, local] = locate(index);
  return shards_[static_cast<size_t>(shard)]->report(local);
}

const float* Dataset::labels(int64_t index) const {
  const auto [shard, local] = locate(index);
  return shards_[static_cast<size_t>(shard)]->labels(local);
}

void Dataset::read_mask(int64_t index, uint8_t* out) const {
  const auto [shard, local] = locate(index);
  try {
    shards_[static_cast<size_t>(shard)]->read_mask(local, out);
  } catch (const Error& error) {
    MGCA_FAIL("{} [dataset index {}]", error.message(), index);
  }
}

std::vector<Box> Dataset::boxes(int64_t index) const {
  const auto [shard, local] = locate(index);
  return shards_[static_cast<size_t>(shard)]->boxes(local);
}

}  // namespace mgca::io
