// The public layouts: Open-I (IU X-ray), MIMIC-CXR-JPG, a generic CSV,
// CheXpert, RSNA Pneumonia and MedMNIST (.npz). Each lists its items in a
// deterministic order; problems with single items become skip reasons,
// problems with the whole input are errors.
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <pugixml.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "csv.h"
#include "mgca/data/import.h"
#include "mgca/io/dataset_file.h"
#include "mgca/util/error.h"
#include "npz.h"

namespace mgca::data {
namespace fs = std::filesystem;

// The base class's defaults live beside the sources (not in the torch-using
// import driver), so the parsers build without torch (fuzz/).
GrayImage ImportSource::load_image(const ImportItem& item, DecodeNotes* /*notes*/) const {
  MGCA_FAIL("item '{}' has no image file and its source holds no pixels", item.id);
}

std::string ImportSource::source_mask(const ImportItem& item, int64_t, int64_t, std::vector<uint8_t>&) const {
  MGCA_FAIL("item '{}': its source has no masks", item.id);
}

namespace {

const std::vector<std::string>& chexpert_label_names() {
  // CheXpert's 14 observations in its CSV order (also Open-I's file2label.json order).
  static const std::vector<std::string> names = {
      "No Finding",   "Enlarged Cardiomediastinum", "Cardiomegaly",     "Lung Opacity", "Lung Lesion",
      "Edema",        "Consolidation",              "Pneumonia",        "Atelectasis",  "Pneumothorax",
      "Pleural Effusion", "Pleural Other",          "Fracture",         "Support Devices"};
  return names;
}

// The same 14 in alphabetical order: Open-I's file2label.json and MIMIC-CXR's chexpert table.
const std::vector<std::string>& alphabetical_label_names() {
  static const std::vector<std::string> names = {
      "Atelectasis",  "Cardiomegaly", "Consolidation",    "Edema",         "Enlarged Cardiomediastinum",
      "Fracture",     "Lung Lesion",  "Lung Opacity",     "No Finding",    "Pleural Effusion",
      "Pleural Other", "Pneumonia",   "Pneumothorax",     "Support Devices"};
  return names;
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

// stem → path of every image file below `dir` (first found in sorted order
// wins); `.dcm` files are recorded separately so RSNA can say why it skips.
struct ImageIndex {
  std::unordered_map<std::string, fs::path> images;
  std::unordered_set<std::string> dicoms;
};

ImageIndex index_images(const fs::path& dir) {
  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink);
       it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_regular_file()) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  ImageIndex index;
  for (const auto& path : files) {
    const std::string ext = lower(path.extension().string());
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg") {
      index.images.emplace(path.stem().string(), path);
    } else if (ext == ".dcm") {
      index.dicoms.insert(path.stem().string());
    }
  }
  return index;
}

// Natural order for file names that are numbers ("2.xml" before "10.xml").
bool natural_less(const fs::path& a, const fs::path& b) {
  const std::string sa = a.stem().string(), sb = b.stem().string();
  const bool na = !sa.empty() && std::all_of(sa.begin(), sa.end(), ::isdigit);
  const bool nb = !sb.empty() && std::all_of(sb.begin(), sb.end(), ::isdigit);
  if (na && nb && sa.size() != sb.size()) return sa.size() < sb.size();
  if (na != nb) return na;
  return a < b;
}

fs::path existing(const fs::path& explicit_path, const std::vector<fs::path>& candidates) {
  if (!explicit_path.empty()) {
    MGCA_CHECK(fs::exists(explicit_path), "'{}' does not exist", explicit_path.string());
    return explicit_path;
  }
  for (const auto& candidate : candidates) {
    if (fs::exists(candidate)) return candidate;
  }
  return {};
}

bool blank_cell(const std::string& cell) {
  return std::all_of(cell.begin(), cell.end(), [](unsigned char c) { return std::isspace(c); });
}

// A label cell: "" → NaN, else a number that is a dataset label (1, 0, -1,
// 1.0, ...). False for anything else (text, 7.5).
bool parse_label(const std::string& cell, float& value) {
  if (blank_cell(cell)) {
    value = NAN;
    return true;
  }
  const char* begin = cell.c_str();
  char* end = nullptr;
  value = std::strtof(begin, &end);
  while (end && *end && std::isspace(static_cast<unsigned char>(*end))) ++end;
  return end != begin && *end == '\0' && !std::isnan(value) && io::is_dataset_label(value);
}

// A row whose quote never closes, or whose field count differs from the
// header's, becomes a counted skip with an id naming the table and line.
// A finite decimal number filling the whole cell.
bool parse_number(const std::string& cell, float& value) {
  try {
    size_t used = 0;
    value = std::stof(cell, &used);
    return used == cell.size() && std::isfinite(value);
  } catch (const std::exception&) {
    return false;
  }
}

bool mark_bad_row(const CsvReader& csv, const std::vector<std::string>& row, ImportItem& item) {
  if (csv.malformed().empty() && row.size() == csv.header().size()) return false;
  item.id = fmt::format("{}:{}", csv.path().filename().string(), csv.line());
  item.skip_reason = csv.malformed().empty() ? skip::kBadRow : skip::kUnterminatedQuote;
  item.skip_detail = csv.malformed().empty()
                         ? fmt::format("line {}: {} fields, the header has {}", csv.line(), row.size(), csv.header().size())
                         : csv.malformed();
  return true;
}

using CsvRow = std::vector<std::string>;

// The label cells `columns` (named `names`) of a row, appended to
// item.labels; the first cell that is not a label makes the item a bad-label
// skip naming the line and the column.
void read_label_cells(const CsvReader& csv, const CsvRow& row, const std::vector<int>& columns,
                      const std::vector<std::string>& names, ImportItem& item) {
  for (size_t l = 0; l < columns.size(); ++l) {
    float value = 0;
    const std::string& cell = row[static_cast<size_t>(columns[l])];
    if (!parse_label(cell, value) && item.skip_reason.empty()) {
      item.skip_reason = skip::kBadLabel;
      item.skip_detail = fmt::format("line {}: column '{}' = '{}'", csv.line(), names[l], cell);
    }
    item.labels.push_back(value);
  }
}

class ListedSource : public ImportSource {
 public:
  std::vector<std::string> label_names() const override { return label_names_; }
  std::vector<ImportItem>& items() override { return items_; }

 protected:
  // Each row of `csv` in turn, as an item that starts as `row_item` (its
  // split from `split_column`, when given, where the row has that cell and it
  // is not empty). A malformed row (mark_bad_row) is added as a counted skip;
  // a good one goes to `read`, which fills the item and returns whether to
  // add it (false: the row adds to an earlier item, see image_item).
  void read_rows(CsvReader& csv, const ImportItem& row_item, int split_column,
                 const std::function<bool(const CsvRow& row, ImportItem& item)>& read) {
    CsvRow row;
    while (csv.next(row)) {
      ImportItem item = row_item;
      if (split_column >= 0 && static_cast<int>(row.size()) > split_column &&
          !row[static_cast<size_t>(split_column)].empty()) {
        item.split = row[static_cast<size_t>(split_column)];
      }
      if (mark_bad_row(csv, row, item) || read(row, item)) items_.push_back(std::move(item));
    }
  }

  // The item of image `id` in a table with one row per annotation (RSNA,
  // SIIM): the one an earlier row started, else `fresh` with that id and its
  // image from `index` below `dir` (or a missing-image or DICOM skip), added
  // now; `*started` says which.
  ImportItem& image_item(const std::string& id, ImportItem fresh, const ImageIndex& index, const fs::path& dir,
                         bool* started = nullptr) {
    auto known = item_of_image_.find(id);
    if (started) *started = known == item_of_image_.end();
    if (known != item_of_image_.end()) return items_[known->second];
    item_of_image_.emplace(id, items_.size());
    fresh.id = id;
    const auto image = index.images.find(id);
    if (image != index.images.end()) {
      fresh.image = image->second;
    } else {
      fresh.skip_reason = index.dicoms.count(id) ? skip::kDicom : skip::kMissingImage;
      fresh.skip_detail = fmt::format("no {}.png or .jpg below '{}'", id, dir.string());
    }
    items_.push_back(std::move(fresh));
    return items_.back();
  }

  std::vector<std::string> label_names_;
  std::vector<ImportItem> items_;

 private:
  std::unordered_map<std::string, size_t> item_of_image_;  // image_item: id → index in items_
};

// ---------------------------------------------------------------- Open-I

class OpenISource : public ListedSource {
 public:
  explicit OpenISource(const ImportOptions& options) {
    const fs::path& dir = options.in;
    MGCA_CHECK(fs::is_directory(dir), "openi: --in '{}' is not a folder", dir.string());
    std::vector<fs::path> reports;
    for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
      if (it->is_regular_file() && lower(it->path().extension().string()) == ".xml") reports.push_back(it->path());
    }
    MGCA_CHECK(!reports.empty(), "openi: no report XML files (ecgen-radiology/*.xml) below '{}'", dir.string());
    std::sort(reports.begin(), reports.end(), natural_less);
    const ImageIndex index = index_images(dir);

    // Labels: file2label.json, keyed "ecgen-radiology/N.xml".
    std::unordered_map<std::string, std::vector<float>> labels;
    const fs::path labels_file = existing(options.labels_file, {dir / "file2label.json"});
    if (!labels_file.empty()) {
      label_names_ = alphabetical_label_names();
      try {
        std::ifstream in(labels_file);
        const auto doc = nlohmann::json::parse(in);
        for (const auto& [key, values] : doc.items()) {
          std::vector<float> row;
          for (const auto& v : values) row.push_back(v.get<float>());
          MGCA_CHECK(row.size() == label_names_.size(), "'{}': '{}' has {} labels, expected {}",
                     labels_file.string(), key, row.size(), label_names_.size());
          labels.emplace(fs::path(key).filename().string(), std::move(row));
        }
      } catch (const nlohmann::json::exception& error) {
        MGCA_FAIL("'{}': {}", labels_file.string(), error.what());
      }
    }
    // Splits: the R2Gen annotation, keyed by study ("CXR2384_IM-0942").
    std::unordered_map<std::string, std::string> splits;
    const fs::path splits_file = existing(options.splits_file, {dir / "r2gen_annotation.json"});
    if (!splits_file.empty()) {
      try {
        std::ifstream in(splits_file);
        const auto doc = nlohmann::json::parse(in);
        for (const auto& [split, entries] : doc.items()) {
          for (const auto& entry : entries) splits.emplace(entry.at("id").get<std::string>(), split);
        }
      } catch (const nlohmann::json::exception& error) {
        MGCA_FAIL("'{}': {}", splits_file.string(), error.what());
      }
    }

    for (const auto& path : reports) {
      const std::string name = path.filename().string();
      pugi::xml_document doc;
      const pugi::xml_parse_result parsed = doc.load_file(path.c_str());
      if (!parsed) {
        ImportItem item;
        item.id = name;
        item.split = splits.empty() ? "all" : "unlisted";
        item.skip_reason = skip::kBadXml;
        item.skip_detail = parsed.description();
        items_.push_back(std::move(item));
        continue;
      }
      std::string impression, findings;
      for (const auto& node : doc.select_nodes("//AbstractText[@Label]")) {
        const std::string label = node.node().attribute("Label").value();
        if (label == "FINDINGS") findings = node.node().text().get();
        if (label == "IMPRESSION") impression = node.node().text().get();
      }
      const auto images = doc.select_nodes("//parentImage[@id]");
      if (images.empty()) {
        ImportItem item;
        item.id = name;
        item.split = splits.empty() ? "all" : "unlisted";
        item.skip_reason = skip::kNoImages;
        item.skip_detail = "no <parentImage> in the XML";
        items_.push_back(std::move(item));
        continue;
      }
      const auto found_labels = labels.find(name);
      for (const auto& node : images) {
        ImportItem item;
        item.id = node.node().attribute("id").value();
        // The study is the image id without its last "-NNNN" (R2Gen's ids).
        const std::string study = item.id.substr(0, item.id.rfind('-'));
        const auto split = splits.find(study);
        item.split = splits.empty() ? "all" : split != splits.end() ? split->second : "unlisted";
        item.impression = impression;
        item.findings = findings;
        if (!label_names_.empty()) {
          item.labels = found_labels != labels.end() ? found_labels->second
                                                     : std::vector<float>(label_names_.size(), NAN);
        }
        const auto image = index.images.find(item.id);
        if (image != index.images.end()) {
          item.image = image->second;
        } else {
          item.skip_reason = skip::kMissingImage;
          item.skip_detail = fmt::format("no {}.png below '{}'", item.id, dir.string());
        }
        items_.push_back(std::move(item));
      }
    }
  }
};

// ---------------------------------------------------------------- MIMIC-CXR-JPG

class MimicSource : public ListedSource {
 public:
  explicit MimicSource(const ImportOptions& options) : dir_(options.in), reports_file_(options.reports_file) {
    MGCA_CHECK(fs::is_directory(dir_), "mimic-cxr: --in '{}' is not a folder", dir_.string());
    const auto table = [&](const std::string& base, bool required) {
      const fs::path found = existing({}, {dir_ / (base + ".csv"), dir_ / (base + ".csv.gz")});
      MGCA_CHECK(!required || !found.empty(), "mimic-cxr: '{}.csv[.gz]' not found in '{}'", base, dir_.string());
      return found;
    };
    const fs::path metadata = table("mimic-cxr-2.0.0-metadata", true);
    const fs::path split_table = table("mimic-cxr-2.0.0-split", false);
    const fs::path chexpert = table("mimic-cxr-2.0.0-chexpert", false);
    reports_file_ = existing(options.reports_file, {dir_ / "mimic_cxr_sectioned.csv", dir_ / "mimic_cxr_sectioned.csv.gz"});
    MGCA_CHECK(!reports_file_.empty(),
               "mimic-cxr: the sectioned reports 'mimic_cxr_sectioned.csv' (MIMIC-CXR's create_section_files.py) "
               "are not in '{}'; pass --reports FILE",
               dir_.string());

    std::unordered_map<std::string, std::string> splits;
    if (!split_table.empty()) {
      CsvReader csv(split_table);
      const int dicom = csv.require_column("dicom_id"), split = csv.require_column("split");
      std::vector<std::string> row;
      while (csv.next(row)) {
        if (static_cast<int>(row.size()) > std::max(dicom, split)) splits[row[static_cast<size_t>(dicom)]] = row[static_cast<size_t>(split)];
      }
    }
    std::unordered_map<std::string, std::vector<float>> labels;  // study id → labels
    if (!chexpert.empty()) {
      CsvReader csv(chexpert);
      const int study = csv.require_column("study_id");
      std::vector<int> columns;
      for (const auto& name : alphabetical_label_names()) columns.push_back(csv.require_column(name));
      label_names_ = alphabetical_label_names();
      std::vector<std::string> row;
      while (csv.next(row)) {
        if (row.size() != csv.header().size()) continue;  // a malformed label row leaves the study unlabelled
        std::vector<float> values;
        bool ok = true;
        for (int c : columns) {
          float v = 0;
          ok &= parse_label(row[static_cast<size_t>(c)], v);
          values.push_back(v);
        }
        if (ok) labels[row[static_cast<size_t>(study)]] = std::move(values);
      }
    }

    CsvReader csv(metadata);
    const int dicom = csv.require_column("dicom_id"), subject = csv.require_column("subject_id");
    const int study = csv.require_column("study_id"), view = csv.require_column("ViewPosition");
    ImportItem row_item;
    row_item.split = splits.empty() ? "all" : "unlisted";
    read_rows(csv, row_item, -1, [&](const CsvRow& row, ImportItem& item) {
      item.id = row[static_cast<size_t>(dicom)];
      const auto split = splits.find(item.id);
      item.split = splits.empty() ? "all" : split != splits.end() ? split->second : "unlisted";
      const std::string& subject_id = row[static_cast<size_t>(subject)];
      const std::string& study_id = row[static_cast<size_t>(study)];
      // Indexed by item: read_rows appends this row's item next, and a bad row's
      // item (appended without a study) must not shift the later ones.
      studies_.resize(items_.size() + 1);
      studies_[items_.size()] = study_id;
      if (!label_names_.empty()) {
        const auto found = labels.find(study_id);
        item.labels = found != labels.end() ? found->second : std::vector<float>(label_names_.size(), NAN);
      }
      const std::string& position = row[static_cast<size_t>(view)];
      if (options.frontal_only && position != "PA" && position != "AP") {
        item.skip_reason = skip::kNotFrontal;
        item.skip_detail = fmt::format("ViewPosition '{}'", position);
      }
      item.image = dir_ / "files" / ("p" + subject_id.substr(0, 2)) / ("p" + subject_id) / ("s" + study_id) /
                   (item.id + ".jpg");
      return true;
    });
    studies_.resize(items_.size());  // bad rows at the end have no study either
  }

  // Reads the report sections of this rank's studies only (the table is large).
  void prepare(int64_t begin, int64_t end) override {
    std::unordered_map<std::string, std::vector<size_t>> wanted;  // "s<study>" → items
    for (int64_t i = begin; i < end; ++i) {
      if (!items_[static_cast<size_t>(i)].skip_reason.empty()) continue;
      wanted["s" + studies_[static_cast<size_t>(i)]].push_back(static_cast<size_t>(i));
    }
    CsvReader csv(reports_file_);
    const int study = csv.require_column("study");
    const int impression = csv.require_column("impression"), findings = csv.require_column("findings");
    std::vector<std::string> row;
    std::unordered_set<std::string> found;
    while (csv.next(row)) {
      if (row.size() != csv.header().size()) continue;
      const auto it = wanted.find(row[static_cast<size_t>(study)]);
      if (it == wanted.end()) continue;
      found.insert(it->first);
      for (size_t i : it->second) {
        items_[i].impression = row[static_cast<size_t>(impression)];
        items_[i].findings = row[static_cast<size_t>(findings)];
      }
    }
    for (const auto& [key, list] : wanted) {
      if (found.count(key)) continue;
      for (size_t i : list) {
        items_[i].skip_reason = skip::kNoReport;
        items_[i].skip_detail = fmt::format("study {} not in '{}'", key, reports_file_.filename().string());
      }
    }
  }

 private:
  fs::path dir_, reports_file_;
  std::vector<std::string> studies_;  // per item
};

// ---------------------------------------------------------------- csv

fs::path single_table(const fs::path& in, const std::string& format) {
  if (fs::is_regular_file(in)) return in;
  MGCA_CHECK(fs::is_directory(in), "{}: --in '{}' is neither a file nor a folder", format, in.string());
  std::vector<fs::path> tables;
  for (const auto& entry : fs::directory_iterator(in)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && (lower(entry.path().extension().string()) == ".csv" ||
                                    (name.size() > 7 && lower(name.substr(name.size() - 7)) == ".csv.gz"))) {
      tables.push_back(entry.path());
    }
  }
  MGCA_CHECK(tables.size() == 1, "{}: '{}' holds {} .csv files; pass the table itself as --in", format,
             in.string(), tables.size());
  return tables.front();
}

class CsvSource : public ListedSource {
 public:
  explicit CsvSource(const ImportOptions& options) {
    const fs::path table = single_table(options.in, "csv");
    const fs::path base = table.parent_path();
    CsvReader csv(table);
    const int image = csv.require_column("image_path"), report = csv.require_column("report");
    const int id = csv.column("id"), split = csv.column("split");
    std::vector<int> label_columns;
    for (size_t c = 0; c < csv.header().size(); ++c) {
      const int column = static_cast<int>(c);
      if (column == image || column == report || column == id || column == split) continue;
      label_columns.push_back(column);
      label_names_.push_back(csv.header()[c]);
    }
    ImportItem row_item;
    row_item.split = "all";
    read_rows(csv, row_item, split, [&](const CsvRow& row, ImportItem& item) {
      const std::string& path = row[static_cast<size_t>(image)];
      item.id = id >= 0 ? row[static_cast<size_t>(id)] : path;
      item.impression = row[static_cast<size_t>(report)];
      item.image = fs::path(path).is_absolute() ? fs::path(path) : base / path;
      if (path.empty()) {
        item.id = fmt::format("{}:{}", table.filename().string(), csv.line());
        item.skip_reason = skip::kMissingImage;
        item.skip_detail = "empty image_path";
      }
      read_label_cells(csv, row, label_columns, label_names_, item);
      return true;
    });
  }
};

// ---------------------------------------------------------------- CheXpert

class ChexpertSource : public ListedSource {
 public:
  explicit ChexpertSource(const ImportOptions& options) {
    const fs::path& dir = options.in;
    MGCA_CHECK(fs::is_directory(dir), "chexpert: --in '{}' is not a folder", dir.string());
    label_names_ = chexpert_label_names();
    int tables = 0;
    for (const auto& [file, split] : std::vector<std::pair<std::string, std::string>>{
             {"train.csv", "train"}, {"valid.csv", "valid"}, {"test.csv", "test"}}) {
      if (!fs::exists(dir / file)) continue;
      ++tables;
      CsvReader csv(dir / file);
      const int path = csv.require_column("Path");
      const int view = csv.column("Frontal/Lateral");
      std::vector<int> columns;
      for (const auto& name : label_names_) columns.push_back(csv.require_column(name));
      ImportItem row_item;
      row_item.split = split;
      row_item.has_report = false;
      read_rows(csv, row_item, -1, [&](const CsvRow& row, ImportItem& item) {
        item.id = row[static_cast<size_t>(path)];
        // Path starts with the dataset folder ("CheXpert-v1.0-small/train/..."):
        // relative to the folder above --in, or to --in without that first part.
        const fs::path relative(item.id);
        item.image = dir.parent_path() / relative;
        if (!fs::exists(item.image)) {
          fs::path rest;
          for (auto it = std::next(relative.begin()); it != relative.end(); ++it) rest /= *it;
          item.image = dir / rest;
        }
        read_label_cells(csv, row, columns, label_names_, item);
        if (options.frontal_only && view >= 0 && row[static_cast<size_t>(view)] != "Frontal" && item.skip_reason.empty()) {
          item.skip_reason = skip::kNotFrontal;
          item.skip_detail = fmt::format("Frontal/Lateral '{}'", row[static_cast<size_t>(view)]);
        }
        return true;
      });
    }
    MGCA_CHECK(tables > 0, "chexpert: no train.csv / valid.csv in '{}'", dir.string());
  }
};

// ---------------------------------------------------------------- RSNA Pneumonia

// stage_2_train_labels.csv: one row per pneumonia box (x, y, width, height
// in pixels of the 1024 × 1024 image, Target 1), or one row with empty box
// columns and Target 0. One sample per patient with all its boxes as
// (x, y, x + width, y + height), MGCA's create_bbox; a table without the box
// columns gives labels only.
class RsnaSource : public ListedSource {
 public:
  explicit RsnaSource(const ImportOptions& options) {
    const fs::path& dir = options.in;
    MGCA_CHECK(fs::is_directory(dir), "rsna: --in '{}' is not a folder", dir.string());
    const fs::path table = existing({}, {dir / "stage_2_train_labels.csv", dir / "stage_1_train_labels.csv"});
    MGCA_CHECK(!table.empty(), "rsna: 'stage_2_train_labels.csv' not found in '{}'", dir.string());
    label_names_ = {"Pneumonia"};
    const ImageIndex index = index_images(dir);
    CsvReader csv(table);
    const int patient = csv.require_column("patientId"), target = csv.require_column("Target");
    const std::array<int, 4> box_columns = {csv.column("x"), csv.column("y"), csv.column("width"),
                                            csv.column("height")};
    boxes_ = std::all_of(box_columns.begin(), box_columns.end(), [](int c) { return c >= 0; });
    ImportItem row_item;
    row_item.split = "all";
    row_item.has_report = false;
    // A patient has one row per box: every row adds to the patient's item.
    read_rows(csv, row_item, -1, [&](const CsvRow& row, ImportItem& fresh) {
      float value = 0;
      const bool ok = parse_label(row[static_cast<size_t>(target)], value);
      fresh.labels = {NAN};
      ImportItem& item = image_item(row[static_cast<size_t>(patient)], std::move(fresh), index, dir);
      float& label = item.labels[0];
      if (!ok) {
        if (item.skip_reason.empty() || item.skip_reason == skip::kMissingImage || item.skip_reason == skip::kDicom) {
          item.skip_reason = skip::kBadLabel;
          item.skip_detail = fmt::format("line {}: Target = '{}'", csv.line(), row[static_cast<size_t>(target)]);
        }
        return false;
      }
      if (!std::isnan(value)) label = std::isnan(label) ? value : std::max(label, value);
      if (!boxes_ || value != 1.0f) return false;
      std::array<float, 4> v{};
      bool numbers = true;
      for (size_t k = 0; k < 4; ++k) {
        numbers &= parse_number(row[static_cast<size_t>(box_columns[k])], v[k]);
      }
      if (!numbers && item.skip_reason.empty()) {
        item.skip_reason = skip::kBadBox;
        item.skip_detail = fmt::format("line {}: Target 1 with box '{}', '{}', '{}', '{}'", csv.line(),
                                       row[static_cast<size_t>(box_columns[0])], row[static_cast<size_t>(box_columns[1])],
                                       row[static_cast<size_t>(box_columns[2])], row[static_cast<size_t>(box_columns[3])]);
      }
      if (numbers) item.boxes.push_back({v[0], v[1], v[0] + v[2], v[1] + v[3]});
      return false;
    });
  }
  io::AnnotationKinds annotations() const override {
    io::AnnotationKinds kinds;
    kinds.boxes = boxes_;
    return kinds;
  }

 private:
  bool boxes_ = false;
};

// ---------------------------------------------------------------- Object-CXR

// Object-CXR (JF Healthcare, MIDL 2020): train.csv / dev.csv with columns
// image_name, annotation, images in train/ and dev/. An annotation is empty
// (no foreign object) or objects separated by ';', each "TYPE x1 y1 x2 y2 ..."
// with TYPE 0 rectangle, 1 ellipse (both given by corner points), 2 polygon.
// Every object becomes the box spanning its points (MGCA's rectangle_box for
// types 0 and 1; for polygons MGCA centres a box on a shapely polylabel
// point instead, docs/data-format.md). Label "Foreign object" = any object;
// dev.csv is the test split, as MGCA uses it.
class ObjectCxrSource : public ListedSource {
 public:
  explicit ObjectCxrSource(const ImportOptions& options) {
    const fs::path& dir = options.in;
    MGCA_CHECK(fs::is_directory(dir), "object-cxr: --in '{}' is not a folder", dir.string());
    label_names_ = {"Foreign object"};
    int tables = 0;
    for (const auto& [name, split] : std::vector<std::pair<std::string, std::string>>{{"train", "train"},
                                                                                       {"dev", "test"}}) {
      const fs::path table = dir / (name + ".csv");
      if (!fs::exists(table)) continue;
      ++tables;
      CsvReader csv(table);
      const int image = csv.require_column("image_name"), annotation = csv.require_column("annotation");
      ImportItem row_item;
      row_item.split = split;
      row_item.has_report = false;
      const fs::path images = dir / name;  // C++17 lambdas cannot capture a structured binding
      read_rows(csv, row_item, -1, [&](const CsvRow& row, ImportItem& item) {
        item.id = row[static_cast<size_t>(image)];
        item.image = images / item.id;
        const std::string& text = row[static_cast<size_t>(annotation)];
        std::string problem;
        item.boxes = object_cxr_boxes(text, problem);
        if (!problem.empty()) {
          item.skip_reason = skip::kBadBox;
          item.skip_detail = fmt::format("line {}: {} in '{}'", csv.line(), problem, text);
        }
        item.labels = {item.boxes.empty() ? 0.f : 1.f};
        return true;
      });
    }
    MGCA_CHECK(tables > 0, "object-cxr: no train.csv / dev.csv in '{}'", dir.string());
  }
  io::AnnotationKinds annotations() const override {
    io::AnnotationKinds kinds;
    kinds.boxes = true;
    return kinds;
  }

 private:
  // The boxes of one annotation cell; `problem` says what is wrong ("" when fine).
  static std::vector<io::Box> object_cxr_boxes(const std::string& text, std::string& problem) {
    std::vector<io::Box> boxes;
    if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); })) return boxes;
    std::stringstream objects(text);
    std::string object;
    while (std::getline(objects, object, ';')) {
      std::stringstream fields(object);
      std::string type;
      fields >> type;
      if (type != "0" && type != "1" && type != "2") {
        problem = fmt::format("object type '{}' (expected 0 rectangle, 1 ellipse, 2 polygon)", type);
        return {};
      }
      std::vector<float> values;
      std::string field;
      while (fields >> field) {
        float v = 0;
        if (!parse_number(field, v)) {
          problem = fmt::format("coordinate '{}' is not a number", field);
          return {};
        }
        values.push_back(v);
      }
      const size_t least = type == "2" ? 6 : 4;
      if (values.size() < least || values.size() % 2 != 0) {
        problem = fmt::format("{} coordinates for an object of type {}", values.size(), type);
        return {};
      }
      io::Box box{values[0], values[1], values[0], values[1]};
      for (size_t k = 0; k < values.size(); k += 2) {
        box.x0 = std::min(box.x0, values[k]);
        box.x1 = std::max(box.x1, values[k]);
        box.y0 = std::min(box.y0, values[k + 1]);
        box.y1 = std::max(box.y1, values[k + 1]);
      }
      boxes.push_back(box);
    }
    return boxes;
  }
};

// ---------------------------------------------------------------- SIIM-ACR pneumothorax

// The SIIM-ACR competition's train-rle.csv (ImageId, EncodedPixels; the
// published header has a space before EncodedPixels) and the images as
// <ImageId>.png/.jpg anywhere below --in (DICOM: convert first). A row's
// EncodedPixels is "-1" (no pneumothorax) or run-length pairs "start length"
// where each start counts from the end of the previous run, over the pixels
// in column-major order (the competition's rle2mask, transposed as MGCA
// does). An image with several rows gets the union of their masks (MGCA's
// segmentation dataset). Label "Pneumothorax" = any mask pixel.
class SiimSource : public ListedSource {
 public:
  explicit SiimSource(const ImportOptions& options) {
    const fs::path& dir = options.in;
    MGCA_CHECK(fs::is_directory(dir), "siim: --in '{}' is not a folder", dir.string());
    const fs::path table = existing({}, {dir / "train-rle.csv", dir / "stage_2_train.csv"});
    MGCA_CHECK(!table.empty(), "siim: 'train-rle.csv' not found in '{}'", dir.string());
    label_names_ = {"Pneumothorax"};
    const ImageIndex index = index_images(dir);
    CsvReader csv(table);
    const int image = csv.require_column("ImageId");
    int encoded = csv.column(" EncodedPixels");
    if (encoded < 0) encoded = csv.require_column("EncodedPixels");
    ImportItem row_item;
    row_item.split = "all";
    row_item.has_report = false;
    // An image has one row per mask part: every row adds to the image's item.
    read_rows(csv, row_item, -1, [&](const CsvRow& row, ImportItem& fresh) {
      fresh.labels = {0.f};
      bool started = false;
      ImportItem& item = image_item(row[static_cast<size_t>(image)], std::move(fresh), index, dir, &started);
      if (started) {
        item.index = static_cast<int64_t>(runs_.size());
        runs_.emplace_back();
      }
      std::vector<int64_t> numbers;
      std::string problem = parse_runs(row[static_cast<size_t>(encoded)], numbers);
      if (!problem.empty()) {
        if (item.skip_reason.empty()) {
          item.skip_reason = skip::kBadMask;
          item.skip_detail = fmt::format("line {}: {}", csv.line(), problem);
        }
        return false;
      }
      if (!numbers.empty()) item.labels[0] = 1.f;
      runs_[static_cast<size_t>(item.index)].push_back(std::move(numbers));
      return false;
    });
  }
  io::AnnotationKinds annotations() const override {
    io::AnnotationKinds kinds;
    kinds.masks = true;
    return kinds;
  }
  std::string source_mask(const ImportItem& item, int64_t width, int64_t height,
                          std::vector<uint8_t>& mask) const override {
    mask.assign(static_cast<size_t>(width * height), 0);
    for (const auto& runs : runs_[static_cast<size_t>(item.index)]) {
      int64_t position = 0;
      for (size_t k = 0; k < runs.size(); k += 2) {
        position += runs[k];
        if (position + runs[k + 1] > width * height) {
          return fmt::format("a run ends at pixel {} of a {}x{} image", position + runs[k + 1], width, height);
        }
        for (int64_t p = position; p < position + runs[k + 1]; ++p) {
          mask[static_cast<size_t>((p % height) * width + p / height)] = 1;  // column-major → row-major
        }
        position += runs[k + 1];
      }
    }
    return "";
  }

 private:
  // "-1" → no runs; else an even count of non-negative integers (lengths ≥ 1).
  static std::string parse_runs(const std::string& text, std::vector<int64_t>& numbers) {
    std::stringstream in(text);
    std::string field;
    while (in >> field) {
      if (field == "-1" && numbers.empty()) return in >> field ? "'-1' followed by more numbers" : "";
      size_t used = 0;
      long long value = -1;
      try {
        value = std::stoll(field, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != field.size() || value < 0) return fmt::format("run value '{}' is not a non-negative integer", field);
      numbers.push_back(value);
    }
    if (numbers.empty()) return "empty EncodedPixels (the competition writes -1 for no mask)";
    if (numbers.size() % 2 != 0) return fmt::format("{} run values (start/length pairs expected)", numbers.size());
    for (size_t k = 1; k < numbers.size(); k += 2) {
      if (numbers[k] == 0) return "a run of length 0";
    }
    return "";
  }

  std::vector<std::vector<std::vector<int64_t>>> runs_;  // per item (ImportItem::index): its rows' runs
};

// ---------------------------------------------------------------- MedMNIST

class MedmnistSource : public ListedSource {
 public:
  explicit MedmnistSource(const ImportOptions& options) {
    file_ = options.in;
    if (fs::is_directory(file_)) {
      std::vector<fs::path> found;
      for (const auto& entry : fs::directory_iterator(file_)) {
        if (lower(entry.path().extension().string()) == ".npz") found.push_back(entry.path());
      }
      MGCA_CHECK(found.size() == 1, "medmnist: '{}' holds {} .npz files; pass the file itself as --in",
                 file_.string(), found.size());
      file_ = found.front();
    }
    NpzFile npz(file_);
    const std::string name = lower(file_.stem().string());
    std::vector<std::pair<std::string, NpyArray>> labels;
    for (const std::string split : {"train", "val", "test"}) {
      if (!npz.contains(split + "_images")) continue;
      const NpyHeader images = npz.header(split + "_images");
      MGCA_CHECK(images.dtype == "u1" && (images.shape.size() == 3 || (images.shape.size() == 4 && images.shape[3] == 3)),
                 "'{}': {}_images must be uint8 [n, H, W] or [n, H, W, 3], got {} {}", file_.string(), split,
                 images.dtype, fmt::join(images.shape, "x"));
      MGCA_CHECK(npz.contains(split + "_labels"), "'{}': {}_labels is missing", file_.string(), split);
      NpyArray array = npz.read_numeric(split + "_labels");
      MGCA_CHECK(array.shape.size() == 2 && array.shape[0] == images.shape[0] && array.shape[1] >= 1,
                 "'{}': {}_labels has shape {}, expected [{}, L]", file_.string(), split,
                 fmt::join(array.shape, "x"), images.shape[0]);
      Split entry;
      entry.name = split;
      entry.images = images;
      entry.first_item = static_cast<int64_t>(items_.size());
      splits_.push_back(std::move(entry));
      for (int64_t i = 0; i < images.shape[0]; ++i) {
        ImportItem item;
        item.id = fmt::format("{}-{:06d}", split, i);
        item.split = split;
        item.has_report = false;
        item.index = i;
        items_.push_back(std::move(item));
      }
      labels.emplace_back(split, std::move(array));
    }
    MGCA_CHECK(!splits_.empty(), "'{}': no train_images / val_images / test_images arrays", file_.string());
    // Label columns: multi-label arrays keep theirs; one class-index column
    // becomes a binary label (two classes) or one-hot columns.
    const int64_t width = labels.front().second.shape[1];
    double max_value = 0;
    for (const auto& [split, array] : labels) {
      MGCA_CHECK(array.shape[1] == width, "'{}': label widths differ between splits", file_.string());
      for (double v : array.values) max_value = std::max(max_value, v);
    }
    const bool one_hot = width == 1 && max_value > 1;
    if (one_hot) {
      // Class indices become column numbers: whole, >= 0, and a sane count
      // (MedMNIST's sets have at most 11 classes).
      constexpr double kMaxClasses = 1000;
      for (const auto& [split, array] : labels) {
        for (size_t i = 0; i < array.values.size(); ++i) {
          const double v = array.values[i];
          MGCA_CHECK(v >= 0 && v < kMaxClasses && v == std::floor(v),
                     "'{}': {}_labels row {} holds {}: a class-index column holds whole numbers 0 to {}",
                     file_.string(), split, i, v, kMaxClasses - 1);
        }
      }
    }
    const int64_t classes = one_hot ? static_cast<int64_t>(max_value) + 1 : width;
    if (name.find("chestmnist") != std::string::npos && width == 14) {
      label_names_ = {"atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
                      "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"};
    } else if (name.find("pneumoniamnist") != std::string::npos && width == 1 && !one_hot) {
      label_names_ = {"pneumonia"};
    } else if (width == 1 && !one_hot) {
      label_names_ = {"label"};
    } else {
      for (int64_t c = 0; c < classes; ++c) label_names_.push_back(fmt::format(one_hot ? "class_{}" : "label_{}", c));
    }
    size_t next = 0;
    for (const auto& [split, array] : labels) {
      for (int64_t i = 0; i < array.shape[0]; ++i, ++next) {
        auto& item = items_[next];
        if (one_hot) {
          item.labels.assign(static_cast<size_t>(classes), 0.f);
          item.labels[static_cast<size_t>(array.values[static_cast<size_t>(i)])] = 1.f;
        } else {
          for (int64_t c = 0; c < width; ++c) {
            item.labels.push_back(static_cast<float>(array.values[static_cast<size_t>(i * width + c)]));
          }
        }
      }
    }
  }

  // Keeps only this rank's rows of the (possibly compressed) image arrays.
  void prepare(int64_t begin, int64_t end) override {
    NpzFile npz(file_);
    for (auto& split : splits_) {
      const int64_t n = split.images.shape[0];
      const int64_t lo = std::max<int64_t>(begin - split.first_item, 0);
      const int64_t hi = std::min<int64_t>(end - split.first_item, n);
      split.first_row = lo;
      if (lo >= hi) continue;
      split.pixels = npz.read_rows(split.name + "_images", lo, hi);
    }
  }

  GrayImage load_image(const ImportItem& item, DecodeNotes* notes) const override {
    for (const auto& split : splits_) {
      if (split.name != item.split) continue;
      const int64_t h = split.images.shape[1], w = split.images.shape[2];
      const int64_t channels = split.images.shape.size() == 4 ? 3 : 1;
      const int64_t row = item.index - split.first_row;
      const int64_t per_row = h * w * channels;
      MGCA_CHECK(row >= 0 && (row + 1) * per_row <= static_cast<int64_t>(split.pixels.size()),
                 "'{}': row {} of {}_images was not loaded on this rank", file_.string(), item.index, split.name);
      const uint8_t* p = split.pixels.data() + row * per_row;
      GrayImage image;
      image.width = w;
      image.height = h;
      image.pixels.resize(static_cast<size_t>(h * w));
      if (channels == 1) {
        std::copy(p, p + h * w, image.pixels.begin());
      } else {
        for (int64_t i = 0; i < h * w; ++i, p += 3) {
          image.pixels[static_cast<size_t>(i)] =
              static_cast<uint8_t>((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 32768u) >> 16);
        }
        if (notes) notes->color = true;
      }
      return image;
    }
    MGCA_FAIL("'{}': unknown split '{}'", file_.string(), item.split);
  }

 private:
  struct Split {
    std::string name;
    NpyHeader images;
    int64_t first_item = 0;  // index of its first item in items_
    int64_t first_row = 0;   // first row held in pixels
    std::vector<uint8_t> pixels;
  };
  fs::path file_;
  std::vector<Split> splits_;
};

}  // namespace

std::unique_ptr<ImportSource> make_import_source(const ImportOptions& options) {
  const std::string& format = options.format;
  if (format == "openi") return std::make_unique<OpenISource>(options);
  if (format == "mimic-cxr") return std::make_unique<MimicSource>(options);
  if (format == "csv") return std::make_unique<CsvSource>(options);
  if (format == "chexpert") return std::make_unique<ChexpertSource>(options);
  if (format == "rsna") return std::make_unique<RsnaSource>(options);
  if (format == "object-cxr") return std::make_unique<ObjectCxrSource>(options);
  if (format == "siim") return std::make_unique<SiimSource>(options);
  if (format == "medmnist") return std::make_unique<MedmnistSource>(options);
  MGCA_FAIL("unknown import format '{}' (openi, mimic-cxr, csv, chexpert, rsna, object-cxr, siim, medmnist)", format);
}

}  // namespace mgca::data
