#include <fmt/ranges.h>
#include "csv.h"

#include <zlib.h>

#include "mgca/util/error.h"

namespace mgca::data {

CsvReader::CsvReader(const std::filesystem::path& path) : path_(path), buffer_(1 << 16) {
  gzFile file = gzopen(path.c_str(), "rb");
  MGCA_CHECK(file != nullptr, "'{}': cannot open the table", path.string());
  file_ = file;
  MGCA_CHECK(next(header_), "'{}': empty table (no header row)", path.string());
  if (!header_.empty() && header_[0].rfind("\xEF\xBB\xBF", 0) == 0) header_[0].erase(0, 3);  // UTF-8 BOM
  for (size_t i = 0; i < header_.size(); ++i) columns_.emplace(header_[i], static_cast<int>(i));
}

CsvReader::~CsvReader() {
  if (file_) gzclose(static_cast<gzFile>(file_));
}

int CsvReader::column(const std::string& name) const {
  const auto found = columns_.find(name);
  return found == columns_.end() ? -1 : found->second;
}

int CsvReader::require_column(const std::string& name) const {
  const int index = column(name);
  MGCA_CHECK(index >= 0, "'{}': column '{}' is missing (the header has: {})", path_.string(), name,
             fmt::join(header_, ", "));
  return index;
}

int CsvReader::get() {
  if (position_ == filled_) {
    const int got = gzread(static_cast<gzFile>(file_), buffer_.data(), static_cast<unsigned>(buffer_.size()));
    if (got < 0) {
      int code = 0;
      MGCA_FAIL("'{}': read error: {}", path_.string(), gzerror(static_cast<gzFile>(file_), &code));
    }
    if (got == 0) return -1;
    filled_ = static_cast<size_t>(got);
    position_ = 0;
  }
  return static_cast<unsigned char>(buffer_[position_++]);
}

bool CsvReader::next(std::vector<std::string>& fields) {
  fields.clear();
  int c = get();
  // Skip blank lines between records.
  while (c == '\n' || c == '\r') {
    if (c == '\n') ++current_line_;
    c = get();
  }
  if (c < 0) return false;
  record_line_ = current_line_;
  std::string field;
  bool quoted = false, was_quoted = false;
  while (true) {
    if (quoted) {
      MGCA_CHECK(c >= 0, "'{}': line {}: unterminated quoted field", path_.string(), record_line_);
      if (c == '"') {
        const int after = get();
        if (after == '"') {
          field += '"';
        } else {
          quoted = false;
          c = after;
          continue;
        }
      } else {
        if (c == '\n') ++current_line_;
        field += static_cast<char>(c);
      }
    } else if (c == '"' && field.empty() && !was_quoted) {
      quoted = was_quoted = true;
    } else if (c == ',') {
      fields.push_back(std::move(field));
      field.clear();
      was_quoted = false;
    } else if (c == '\n' || c == '\r' || c < 0) {
      if (c == '\r') {
        c = get();
        if (c != '\n' && c >= 0) --position_;  // a lone CR ends the record too
      }
      ++current_line_;
      fields.push_back(std::move(field));
      return true;
    } else {
      field += static_cast<char>(c);
    }
    c = get();
  }
}

}  // namespace mgca::data
