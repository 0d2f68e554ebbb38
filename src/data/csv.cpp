#include <fmt/ranges.h>
#include "csv.h"

#include <zlib.h>

#include "mgca/util/error.h"

namespace mgca::data {

CsvReader::CsvReader(const std::filesystem::path& path) : path_(path), buffer_(1 << 16) {
  gzFile file = gzopen(path.c_str(), "rb");
  MGCA_CHECK(file != nullptr, "'{}': cannot open the table", path.string());
  file_ = file;
  try {
    MGCA_CHECK(next(header_), "'{}': empty table (no header row)", path.string());
  } catch (...) {  // a throwing constructor runs no destructor: close here (found by fuzz_csv)
    gzclose(file);
    file_ = nullptr;
    throw;
  }
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

void CsvReader::push_back(const std::string& bytes) {
  std::vector<char> merged(bytes.begin(), bytes.end());
  merged.insert(merged.end(), buffer_.begin() + static_cast<std::ptrdiff_t>(position_),
                buffer_.begin() + static_cast<std::ptrdiff_t>(filled_));
  filled_ = merged.size();
  position_ = 0;
  if (merged.size() < (1 << 16)) merged.resize(1 << 16);  // gzread fills the whole buffer
  buffer_ = std::move(merged);
}

bool CsvReader::next(std::vector<std::string>& fields) {
  fields.clear();
  malformed_.clear();
  raw_.clear();
  int c = get();
  // Skip blank lines between records.
  while (c == '\n' || c == '\r') {
    if (c == '\n') ++current_line_;
    c = get();
  }
  if (c < 0) return false;
  record_line_ = current_line_;
  std::string field;
  bool quoted = false, was_quoted = false, spans_lines = false;
  // An unterminated quote: the record is its first line alone, the rest is read again.
  const auto unterminated = [&](const char* why) {
    const size_t line_end = raw_.find('\n');
    push_back(line_end == std::string::npos ? std::string() : raw_.substr(line_end + 1));
    malformed_ = fmt::format("'{}': line {}: a quoted field is never closed ({}); the line is one bad row",
                             path_.string(), record_line_, why);
    std::string line = raw_.substr(0, line_end);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    fields.assign(1, std::move(line));
    current_line_ = record_line_ + 1;
    return true;
  };
  while (true) {
    if (c >= 0) raw_ += static_cast<char>(c);
    if (quoted) {
      if (c < 0) return unterminated("the file ends inside it");
      if (c == '"') {
        const int after = get();
        if (after == '"') {
          raw_ += '"';
          field += '"';
        } else {
          if (spans_lines && after >= 0 && after != ',' && after != '\n' && after != '\r') {
            raw_ += static_cast<char>(after);
            return unterminated("a quote inside it is followed by text, not a comma or a line end");
          }
          quoted = false;
          c = after;
          continue;
        }
      } else {
        if (c == '\n') {
          ++current_line_;
          spans_lines = true;
        }
        field += static_cast<char>(c);
      }
    } else if (c == '"' && field.empty() && !was_quoted) {
      quoted = was_quoted = true;
      spans_lines = false;
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
