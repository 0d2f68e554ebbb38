// Dataset files (docs/contract.md §5.1; the full format is in docs/data-format.md).
//
// A dataset is a folder holding `dataset.json` (format version, shard list
// with counts and SHA-256 checksums, image size, label names, source, split)
// and HDF5 shards `*.h5`, each with
//   images  uint8   [n, S, S]  chunked one image per chunk, Fletcher32
//   reports string  [n]        UTF-8, variable length; the cleaned report's
//                              sentences joined by '\n' ("" when the source has none)
//   ids     string  [n]        UTF-8, variable length, unique within the dataset
//   labels  float32 [n, L]     optional: 1 positive, 0 negative, -1 uncertain, NaN missing
//   masks   uint8   [n, S, S]  optional: 1 inside the finding, 0 outside; chunked like images
//   boxes   float32 [M, 4]     optional: (x0, y0, x1, y1) in stored pixels, sample i's boxes
//   box_offsets int64 [n + 1]  are rows box_offsets[i] .. box_offsets[i+1]-1 (none: healthy)
// Sample g of the dataset is sample g - offset(shard) of the shard holding it,
// shards taken in manifest order.
//
// Serial HDF5: one writer per file. Under `mpirun -np K` each rank writes its
// own shards and rank 0 writes the manifest. Readers are thread-safe (HDF5 is
// built thread-safe on Debian; the image reads bypass the library, see
// ShardReader).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mgca::io {

inline constexpr int kDatasetFormatVersion = 1;
inline constexpr const char* kManifestFileName = "dataset.json";

// Which annotations a dataset carries. With masks (boxes), every sample has
// one (possibly empty: no finding); a source that cannot annotate an item
// skips it with a counted reason rather than storing it unannotated.
struct AnnotationKinds {
  bool masks = false;
  bool boxes = false;
  bool operator==(const AnnotationKinds& other) const {
    return masks == other.masks && boxes == other.boxes;
  }
  bool operator!=(const AnnotationKinds& other) const { return !(*this == other); }
};

// A box in the stored image's pixel coordinates (after resize-and-pad):
// x to the right, y down, 0 <= x0 < x1 <= S and 0 <= y0 < y1 <= S.
struct Box {
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

// One sample's annotations for ShardWriter::append: `mask` points to S² bytes
// of 0/1 (required when the shard stores masks), `boxes` may be empty.
struct SampleAnnotation {
  const uint8_t* mask = nullptr;
  std::vector<Box> boxes;
};

// Why a box cannot be stored in an S×S image ("" when it can): not finite,
// empty, or outside the image. Importers count such boxes as skips.
std::string box_problem(const Box& box, int64_t image_size);

// The values a dataset label may hold: 1 positive, 0 negative, -1
// uncertain, NaN missing. Importers refuse other values; eval checks them.
inline bool is_dataset_label(double value) {
  return value != value || value == 1.0 || value == 0.0 || value == -1.0;
}

struct ShardInfo {
  std::string file;    // file name relative to the dataset folder
  int64_t count = 0;   // samples in the shard
  int64_t bytes = 0;   // file size
  std::string sha256;  // lower-case hex digest of the whole file
};

struct DatasetManifest {
  int format_version = kDatasetFormatVersion;
  std::string source;  // "openi", "mimic-cxr", "csv", "chexpert", "rsna", "medmnist", "synth"
  std::string split;   // "train", "val", "test", "all", ...
  int64_t image_size = 0;
  std::vector<std::string> label_names;  // empty when the dataset has no labels
  AnnotationKinds annotations;           // "annotations": ["masks", "boxes"] (absent: none)
  std::vector<ShardInfo> shards;
  // Free-form JSON object kept under "info" (the command, the import summary,
  // the generator's options); "{}" when there is nothing.
  std::string info_json = "{}";

  int64_t num_samples() const;
};

// Reads and validates `dir/dataset.json` (errors name the file and the key).
DatasetManifest read_manifest(const std::filesystem::path& dir);
// Writes `dir/dataset.json` atomically (temporary file + rename).
void write_manifest(const std::filesystem::path& dir, const DatasetManifest& manifest);

// Writes one shard. Appends are buffered; close() writes the strings and
// labels, renames "<path>.tmp" to path and returns the checksum. A writer
// destroyed without close() removes its temporary file. Not thread-safe.
class ShardWriter {
 public:
  ShardWriter(const std::filesystem::path& path, int64_t image_size,
              std::vector<std::string> label_names, AnnotationKinds annotations = {});
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // image: image_size * image_size bytes, row-major. labels: label_names.size()
  // floats, or nullptr when the shard has no labels. annotation: required
  // when the shard stores masks or boxes (a mask must hold only 0 and 1, each
  // box must pass box_problem), ignored otherwise.
  void append(std::string_view id, std::string_view report, const uint8_t* image,
              const float* labels = nullptr, const SampleAnnotation* annotation = nullptr);
  int64_t count() const { return count_; }
  ShardInfo close();

 private:
  void flush_images();

  std::filesystem::path path_, temp_path_;
  int64_t image_size_;
  std::vector<std::string> label_names_;
  AnnotationKinds annotations_;
  int64_t count_ = 0;
  int64_t images_written_ = 0;
  std::vector<uint8_t> image_buffer_, mask_buffer_;
  std::vector<std::string> ids_, reports_;
  std::vector<float> labels_, boxes_;
  std::vector<int64_t> box_offsets_{0};
  int64_t file_ = -1, images_ = -1, masks_ = -1;  // hid_t
  bool closed_ = false;
};

// Writes samples in order into shards of at most `shard_size` samples named
// "<prefix>-00000.h5", "<prefix>-00001.h5", ... in `dir` (which must exist).
// finish() closes the last shard and returns every shard's info in order; a
// writer destroyed without finish() removes its unfinished shard.
class ShardedWriter {
 public:
  ShardedWriter(std::filesystem::path dir, std::string prefix, int64_t image_size,
                std::vector<std::string> label_names, int64_t shard_size,
                AnnotationKinds annotations = {});
  void append(std::string_view id, std::string_view report, const uint8_t* image,
              const float* labels = nullptr, const SampleAnnotation* annotation = nullptr);
  int64_t count() const { return count_; }
  std::vector<ShardInfo> finish();

 private:
  std::filesystem::path dir_;
  std::string prefix_;
  int64_t image_size_, shard_size_;
  std::vector<std::string> label_names_;
  AnnotationKinds annotations_;
  std::unique_ptr<ShardWriter> current_;
  std::vector<ShardInfo> done_;
  int64_t count_ = 0;
};

// One shard opened read-only. The ids, reports and labels are read into
// memory at open; images are read on demand. read_image() is thread-safe and
// lock-free: the byte offset of every image chunk is looked up once at open,
// and a read is a pread of the chunk plus a check of its Fletcher32 checksum
// (the checksum HDF5 wrote), so many loader threads read in parallel.
class ShardReader {
 public:
  explicit ShardReader(const std::filesystem::path& path);
  ~ShardReader();
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  const std::filesystem::path& path() const { return path_; }
  int64_t size() const { return count_; }
  int64_t image_size() const { return image_size_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  int64_t num_labels() const { return static_cast<int64_t>(label_names_.size()); }

  // Copies image `index` (image_size² bytes) into out. A checksum mismatch
  // or short read is an error naming the shard and the index.
  void read_image(int64_t index, uint8_t* out) const;
  const std::string& id(int64_t index) const;
  const std::string& report(int64_t index) const;
  // num_labels() floats; nullptr when the shard has no labels.
  const float* labels(int64_t index) const;
  const AnnotationKinds& annotations() const { return annotations_; }
  // Copies mask `index` (image_size² bytes of 0/1) into out; an error when
  // the shard has no masks. Thread-safe (through HDF5's lock: masks are read
  // by evaluation, not by the pretraining loader).
  void read_mask(int64_t index, uint8_t* out) const;
  // Sample `index`'s boxes (empty: none); an error when the shard has no boxes.
  std::vector<Box> boxes(int64_t index) const;

 private:
  void check_index(int64_t index) const;

  std::filesystem::path path_;
  int64_t count_ = 0, image_size_ = 0;
  std::vector<std::string> label_names_, ids_, reports_;
  std::vector<float> labels_;
  AnnotationKinds annotations_;
  std::vector<float> boxes_;
  std::vector<int64_t> box_offsets_;
  int64_t h5_masks_file_ = -1, h5_masks_ = -1;  // hid_t
  std::vector<uint64_t> chunk_offsets_;  // file offset of each image chunk
  int fd_ = -1;
  // Shards not written by ShardWriter (other filters or chunking) are read
  // through HDF5 instead (hid_t handles; the library serialises the reads).
  int64_t h5_file_ = -1, h5_images_ = -1;
};

struct DatasetOpenOptions {
  // Size and SHA-256 of every shard against the manifest: reads every byte
  // once (docs/data-format.md gives the cost), so a changed byte anywhere --
  // a report, an id, a label, an image -- is an error at open naming the
  // shard. Off only where the same dataset was verified just before.
  bool verify_checksums = true;
};

// A dataset folder: the manifest and its shards, indexed globally.
class Dataset {
 public:
  static std::shared_ptr<Dataset> open(const std::filesystem::path& dir,
                                       const DatasetOpenOptions& options = {});

  const std::filesystem::path& dir() const { return dir_; }
  const DatasetManifest& manifest() const { return manifest_; }
  int64_t size() const { return size_; }
  int64_t image_size() const { return manifest_.image_size; }
  int64_t num_labels() const { return static_cast<int64_t>(manifest_.label_names.size()); }
  bool has_labels() const { return num_labels() > 0; }

  // Global index → data; thread-safe. Errors name the shard, its local index and the global index.
  void read_image(int64_t index, uint8_t* out) const;
  const std::string& id(int64_t index) const;
  const std::string& report(int64_t index) const;
  const float* labels(int64_t index) const;  // nullptr without labels
  const AnnotationKinds& annotations() const { return manifest_.annotations; }
  void read_mask(int64_t index, uint8_t* out) const;  // error without masks
  std::vector<Box> boxes(int64_t index) const;        // error without boxes

  // (shard number, index inside the shard) of a global index.
  std::pair<int64_t, int64_t> locate(int64_t index) const;
  const ShardReader& shard(int64_t number) const { return *shards_.at(static_cast<size_t>(number)); }

 private:
  Dataset() = default;
  std::filesystem::path dir_;
  DatasetManifest manifest_;
  std::vector<std::unique_ptr<ShardReader>> shards_;
  std::vector<int64_t> offsets_;  // first global index of each shard, plus the total
  int64_t size_ = 0;
};

// SHA-256 of a file as lower-case hex (FIPS 180-4).
std::string sha256_file(const std::filesystem::path& path);
std::string sha256_hex(const void* data, size_t size);

// HDF5's Fletcher32 (H5_checksum_fletcher32) of a buffer, as the filter stores it.
uint32_t hdf5_fletcher32(const void* data, size_t size);

}  // namespace mgca::io
