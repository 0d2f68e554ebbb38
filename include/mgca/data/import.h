// Importers: public chest X-ray layouts → datasets (docs/contract.md §5.2; usage in
// docs/data-format.md). `mgca prep --format F --in DIR --out OUT` writes one
// dataset per split into OUT/<split>/ and the overall summary to
// OUT/summary.json.
//
// Every item the source lists is either imported or skipped with a reason
// (missing or corrupt image, empty or too short report, bad table row, ...),
// counted in the summary; nothing crashes the import and nothing disappears
// silently. Under `mpirun -np K` rank r imports the r-th contiguous block of
// the (identically ordered) item list and writes its own shards.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mgca/data/dataset_output.h"
#include "mgca/data/image.h"
#include "mgca/io/dataset_file.h"

namespace mgca::data {

struct ImportOptions {
  std::string format;  // openi, mimic-cxr, csv, chexpert, rsna, object-cxr, siim, medmnist
  std::filesystem::path in, out;
  int64_t image_size = 256;
  int64_t shard_size = 4096;
  bool overwrite = false;
  int threads = 1;            // decoding threads per rank
  std::string only_split;     // import only this split ("" = all)
  int64_t limit = -1;         // the first `limit` items only (after listing), -1 = all
  // Image files larger than this are skipped (never read into memory).
  uint64_t max_image_bytes = kDefaultMaxImageFileBytes;
  bool frontal_only = true;   // mimic-cxr (ViewPosition PA/AP), chexpert (Frontal/Lateral)
  // Sources without splits: "train=0.8,val=0.1,test=0.1" assigns each item by
  // a hash of (seed, id); empty = everything in split "all".
  std::string random_split;
  uint64_t seed = 0;
  // Optional side files (default: looked up in --in):
  std::filesystem::path labels_file;   // openi: file2label.json
  std::filesystem::path splits_file;   // openi: r2gen_annotation.json
  std::filesystem::path reports_file;  // mimic-cxr: mimic_cxr_sectioned.csv[.gz]
};

// One thing the source lists: becomes a sample or a counted skip.
struct ImportItem {
  std::string id;
  std::string split;
  std::string impression, findings;  // raw report sections
  bool has_report = true;            // false for classification sets (report stored as "")
  std::vector<float> labels;         // one per label name (NaN = missing); empty without labels
  std::filesystem::path image;       // the image file (empty for sources that hold pixels)
  int64_t index = -1;                // source-specific (the row of an .npz array)
  std::vector<io::Box> boxes;        // in source-image pixels (sources whose annotations() has boxes)
  std::string skip_reason;           // set when listing already found the item unusable
  std::string skip_detail;
};

class ImportSource {
 public:
  virtual ~ImportSource() = default;
  virtual std::vector<std::string> label_names() const = 0;
  // What every sample of the written datasets carries besides the image.
  virtual io::AnnotationKinds annotations() const { return {}; }
  // Identical on every rank: same items in the same order.
  virtual std::vector<ImportItem>& items() = 0;
  // Called with the item range this rank imports, before any load: sources
  // that keep bulky per-item data (report texts) may fill it in here.
  virtual void prepare(int64_t /*begin*/, int64_t /*end*/) {}
  // The pixels of an item without an image file (item.image empty), for
  // sources that hold pixels themselves; image files are read by the driver.
  // Thread-safe. The default fails.
  virtual GrayImage load_image(const ImportItem& item, DecodeNotes* notes) const;
  // Sources whose annotations() has masks: the item's 0/1 mask of a
  // width × height source image (row-major) into `mask`; returns "" or what
  // is wrong with it (the item is then skipped as a bad mask). Thread-safe.
  virtual std::string source_mask(const ImportItem& item, int64_t width, int64_t height,
                                  std::vector<uint8_t>& mask) const;
};

// Lists a source's items (errors for unusable inputs: missing folder, a
// table without a required column, ...).
std::unique_ptr<ImportSource> make_import_source(const ImportOptions& options);

struct ImportResult {
  ImportSummary total;
  std::vector<std::pair<std::string, ImportSummary>> splits;  // split name → its summary
};

// Collective: imports on every rank of `comm` and writes the datasets. The
// result is the same on every rank.
ImportResult run_import(comm::Communicator& comm, const ImportOptions& options);

// Skip reasons, shared by the importers and their tests.
namespace skip {
inline constexpr const char* kMissingImage = "missing image";
inline constexpr const char* kCorruptImage = "corrupt or unreadable image";
inline constexpr const char* kNotRegularFile = "image path is not a regular file";
inline constexpr const char* kImageTooLarge = "image file larger than --max-image-mb";
inline constexpr const char* kEmptyReport = "empty report";
inline constexpr const char* kShortReport = "report shorter than 3 tokens after cleaning";
inline constexpr const char* kNoImages = "report without images";
inline constexpr const char* kBadRow = "table row with missing columns";
inline constexpr const char* kUnterminatedQuote = "table row with an unterminated quote";
inline constexpr const char* kBadLabel = "table row with a bad label value";
inline constexpr const char* kBadXml = "unreadable report XML";
inline constexpr const char* kNoReport = "no report for the study";
inline constexpr const char* kDicom = "DICOM image (convert to PNG or JPEG first)";
inline constexpr const char* kNotFrontal = "not a frontal view";
inline constexpr const char* kDuplicateId = "duplicate id";
inline constexpr const char* kBadBox = "bad box";
inline constexpr const char* kBadMask = "bad mask";
}  // namespace skip

}  // namespace mgca::data
