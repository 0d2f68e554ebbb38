#include "npz.h"

#include <fmt/ranges.h>
#include <zip.h>

#include <cctype>
#include <cstring>

#include "mgca/util/error.h"

namespace mgca::data {

int64_t NpyHeader::item_size() const { return dtype[1] - '0'; }  // parse_npy_header allows 1, 2, 4, 8

int64_t NpyHeader::count() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // parse_npy_header checked that this does not overflow
  return n;
}

NpyHeader parse_npy_header(const uint8_t* data, size_t size, const std::string& what) {
  MGCA_CHECK(size >= 10 && std::memcmp(data, "\x93NUMPY", 6) == 0, "{}: not an .npy array", what);
  const int major = data[6];
  MGCA_CHECK(major >= 1 && major <= 3, "{}: .npy version {} is not supported", what, major);
  const size_t length_bytes = major == 1 ? 2 : 4;
  MGCA_CHECK(size >= 8 + length_bytes, "{}: truncated .npy header", what);
  size_t length = 0;
  for (size_t i = 0; i < length_bytes; ++i) length |= size_t{data[8 + i]} << (8 * i);
  NpyHeader header;
  header.header_bytes = static_cast<int64_t>(8 + length_bytes + length);
  MGCA_CHECK(size >= static_cast<size_t>(header.header_bytes), "{}: truncated .npy header", what);
  const std::string text(reinterpret_cast<const char*>(data) + 8 + length_bytes, length);
  const auto value_of = [&](const std::string& key) {
    const size_t at = text.find("'" + key + "'");
    const size_t colon = at == std::string::npos ? at : text.find(':', at);
    MGCA_CHECK(colon != std::string::npos, "{}: .npy header has no '{}': {}", what, key, text);
    return text.substr(colon + 1);
  };
  const std::string descr = value_of("descr");
  const size_t q1 = descr.find('\''), q2 = q1 == std::string::npos ? q1 : descr.find('\'', q1 + 1);
  MGCA_CHECK(q2 != std::string::npos, "{}: .npy header has no quoted 'descr': {}", what, text);
  std::string type = descr.substr(q1 + 1, q2 - q1 - 1);  // "<u1", "|u1", "<f8"
  MGCA_CHECK(!type.empty() && type[0] != '>', "{}: big-endian arrays are not supported ({})", what, type);
  if (type[0] == '<' || type[0] == '|' || type[0] == '=') type.erase(0, 1);
  MGCA_CHECK(type.size() == 2 && std::strchr("uifb", type[0]) != nullptr && std::strchr("1248", type[1]) != nullptr,
             "{}: unsupported dtype '{}'", what, type);
  header.dtype = type;
  const std::string order = value_of("fortran_order");
  MGCA_CHECK(order.find("False") < order.find(','), "{}: Fortran-order arrays are not supported", what);
  const std::string shape = value_of("shape");
  const size_t open = shape.find('('), close = open == std::string::npos ? open : shape.find(')', open);
  MGCA_CHECK(close != std::string::npos, "{}: .npy header has no shape tuple: {}", what, text);
  int64_t count = 1;
  for (size_t pos = open + 1; pos < close;) {
    if (shape[pos] == ' ' || shape[pos] == ',') {
      ++pos;
      continue;
    }
    int64_t dim = 0;
    MGCA_CHECK(std::isdigit(static_cast<unsigned char>(shape[pos])), "{}: bad shape in .npy header: {}", what, text);
    for (; pos < close && std::isdigit(static_cast<unsigned char>(shape[pos])); ++pos) {
      MGCA_CHECK(!__builtin_mul_overflow(dim, 10, &dim) && !__builtin_add_overflow(dim, shape[pos] - '0', &dim),
                 "{}: shape dimension too large in .npy header: {}", what, text);
    }
    // The data's byte count (count × item size) must fit in int64 too.
    int64_t data_bytes = 0;
    MGCA_CHECK(!__builtin_mul_overflow(count, dim, &count) &&
                   !__builtin_mul_overflow(count, header.item_size(), &data_bytes),
               "{}: shape too large in .npy header: {}", what, text);
    header.shape.push_back(dim);
  }
  return header;
}

NpzFile::NpzFile(const std::filesystem::path& path) : path_(path) {
  int error = 0;
  zip_ = zip_open(path.c_str(), ZIP_RDONLY, &error);
  if (zip_ == nullptr) {
    zip_error_t detail;
    zip_error_init_with_code(&detail, error);
    const std::string message = zip_error_strerror(&detail);
    zip_error_fini(&detail);
    MGCA_FAIL("'{}': not a readable .npz (zip) file: {}", path.string(), message);
  }
}

NpzFile::~NpzFile() {
  if (zip_) zip_discard(static_cast<zip_t*>(zip_));
}

bool NpzFile::contains(const std::string& array) const {
  return zip_name_locate(static_cast<zip_t*>(zip_), (array + ".npy").c_str(), 0) >= 0;
}

namespace {
struct Member {
  zip_file_t* file = nullptr;
  std::string what;
  ~Member() {
    if (file) zip_fclose(file);
  }
  void read(uint8_t* out, size_t size) {
    size_t done = 0;
    while (done < size) {
      const zip_int64_t got = zip_fread(file, out + done, size - done);
      MGCA_CHECK(got > 0, "{}: truncated or corrupt ({} of {} bytes read)", what, done, size);
      done += static_cast<size_t>(got);
    }
  }
};
}  // namespace

NpyHeader NpzFile::header(const std::string& array) const {
  Member member;
  member.what = fmt::format("'{}' array '{}'", path_.string(), array);
  member.file = zip_fopen(static_cast<zip_t*>(zip_), (array + ".npy").c_str(), 0);
  MGCA_CHECK(member.file != nullptr, "{}: not in the archive", member.what);
  // Magic and version, then the header length: 2 bytes in version 1, 4 in
  // versions 2 and 3.
  std::vector<uint8_t> head(8);
  member.read(head.data(), head.size());
  const size_t length_bytes = head[6] == 1 ? 2 : 4;
  head.resize(8 + length_bytes);
  member.read(head.data() + 8, length_bytes);
  size_t length = 0;
  for (size_t i = 0; i < length_bytes; ++i) length |= size_t{head[8 + i]} << (8 * i);
  // As numpy's np.load (max_header_size): a longer header is refused.
  MGCA_CHECK(length <= 10000, "{}: .npy header of {} bytes; at most 10000 are read (as numpy's np.load)",
             member.what, length);
  head.resize(8 + length_bytes + length);
  member.read(head.data() + 8 + length_bytes, length);
  const NpyHeader parsed = parse_npy_header(head.data(), head.size(), member.what);
  // The shape must match the data the member holds: a garbled shape would
  // otherwise size allocations (parse_npy_header checked the product fits).
  zip_stat_t stat;
  zip_stat_init(&stat);
  MGCA_CHECK(zip_stat(static_cast<zip_t*>(zip_), (array + ".npy").c_str(), 0, &stat) == 0 &&
                 (stat.valid & ZIP_STAT_SIZE) != 0,
             "{}: the archive does not say its size", member.what);
  const int64_t data_bytes = parsed.count() * parsed.item_size();
  MGCA_CHECK(stat.size >= static_cast<uint64_t>(parsed.header_bytes) &&
                 stat.size - static_cast<uint64_t>(parsed.header_bytes) == static_cast<uint64_t>(data_bytes),
             "{}: the .npy header's shape ({}) needs {} data bytes, the member holds {}", member.what,
             fmt::join(parsed.shape, ", "), data_bytes,
             static_cast<int64_t>(stat.size) - parsed.header_bytes);
  return parsed;
}

std::vector<uint8_t> NpzFile::read_rows(const std::string& array, int64_t begin, int64_t end) const {
  const NpyHeader h = header(array);
  MGCA_CHECK(!h.shape.empty() && begin >= 0 && begin <= end && end <= h.shape[0],
             "'{}' array '{}': rows [{}, {}) out of range", path_.string(), array, begin, end);
  const int64_t row_bytes = h.count() / std::max<int64_t>(h.shape[0], 1) * h.item_size();
  Member member;
  member.what = fmt::format("'{}' array '{}'", path_.string(), array);
  member.file = zip_fopen(static_cast<zip_t*>(zip_), (array + ".npy").c_str(), 0);
  MGCA_CHECK(member.file != nullptr, "{}: not in the archive", member.what);
  std::vector<uint8_t> skip(static_cast<size_t>(std::max<int64_t>(h.header_bytes, 1 << 20)));
  int64_t to_skip = h.header_bytes + begin * row_bytes;
  while (to_skip > 0) {
    const int64_t step = std::min<int64_t>(to_skip, static_cast<int64_t>(skip.size()));
    member.read(skip.data(), static_cast<size_t>(step));
    to_skip -= step;
  }
  // Grown as the data arrives: a member whose declared size lies fails on
  // its first missing chunk, not after allocating what it claimed.
  const int64_t total = (end - begin) * row_bytes;
  std::vector<uint8_t> rows;
  while (static_cast<int64_t>(rows.size()) < total) {
    const size_t done = rows.size();
    rows.resize(done + static_cast<size_t>(std::min<int64_t>(total - static_cast<int64_t>(done), 16 << 20)));
    member.read(rows.data() + done, rows.size() - done);
  }
  return rows;
}

NpyArray NpzFile::read_numeric(const std::string& array) const {
  const NpyHeader h = header(array);
  const std::vector<uint8_t> bytes = read_rows(array, 0, h.shape.empty() ? 0 : h.shape[0]);
  NpyArray out;
  out.shape = h.shape;
  const int64_t n = h.count(), size = h.item_size();
  out.values.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = bytes.data() + i * size;
    double v = 0;
    const char kind = h.dtype[0];
    if (kind == 'u' || kind == 'b') {
      uint64_t x = 0;
      std::memcpy(&x, p, static_cast<size_t>(size));
      v = static_cast<double>(x);
    } else if (kind == 'i') {
      int64_t x = 0;
      std::memcpy(&x, p, static_cast<size_t>(size));
      const int shift = static_cast<int>(64 - 8 * size);
      v = static_cast<double>(shift > 0 ? (x << shift) >> shift : x);  // sign-extend
    } else if (kind == 'f' && size == 4) {
      float x = 0;
      std::memcpy(&x, p, 4);
      v = x;
    } else if (kind == 'f' && size == 8) {
      std::memcpy(&v, p, 8);
    } else {
      MGCA_FAIL("'{}' array '{}': unsupported dtype '{}'", path_.string(), array, h.dtype);
    }
    out.values[static_cast<size_t>(i)] = v;
  }
  return out;
}

}  // namespace mgca::data
