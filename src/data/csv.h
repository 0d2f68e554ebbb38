// A small RFC 4180 CSV reader (quoted fields with commas, newlines and ""
// escapes; CRLF or LF), reading plain or gzip-compressed files (zlib reads
// both), as the public chest X-ray datasets ship their tables.
#pragma once

#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

namespace mgca::data {

class CsvReader {
 public:
  // Reads the header row. Errors name the file.
  explicit CsvReader(const std::filesystem::path& path);
  ~CsvReader();
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  const std::vector<std::string>& header() const { return header_; }
  // Column index of `name`, or -1.
  int column(const std::string& name) const;
  // Column index of `name`; an error naming the file and the column when absent.
  int require_column(const std::string& name) const;
  // The next record (fields as read, possibly fewer or more than the header);
  // false at the end. line() is the line number the record started on.
  //
  // A quoted field that runs over a line end and then does not close
  // properly (end of file inside the quotes, or a closing quote followed by
  // something other than a comma or a line end) is an unterminated quote: it
  // would swallow the rows after it. Such a record is returned as the one
  // line it started on, malformed() says why, and reading goes on with the
  // next line, so every row of the file still comes out as a record.
  bool next(std::vector<std::string>& fields);
  int64_t line() const { return record_line_; }
  // Why the last record from next() is malformed; "" when it is not.
  const std::string& malformed() const { return malformed_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  int get();  // next byte or -1
  // Makes `bytes` the next ones get() returns, before the unread buffer.
  void push_back(const std::string& bytes);
  std::filesystem::path path_;
  void* file_ = nullptr;  // gzFile
  std::vector<char> buffer_;
  size_t position_ = 0, filled_ = 0;
  std::vector<std::string> header_;
  std::unordered_map<std::string, int> columns_;
  int64_t current_line_ = 1, record_line_ = 0;
  std::string raw_;  // the bytes of the record being read
  std::string malformed_;
};

}  // namespace mgca::data
