// PNG (libpng) and JPEG (libjpeg-turbo) decoding to 8-bit gray, and MGCA's
// resize-and-pad. libpng reports errors by longjmp: the decode function below
// creates no C++ objects after setjmp (buffers are sized before or resized
// in place), so nothing is skipped when it jumps.
#include "mgca/data/image.h"

#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "mgca/util/error.h"

namespace mgca::data {
namespace {

struct PngState {
  const uint8_t* data = nullptr;
  size_t size = 0, offset = 0;
  char message[256] = {0};
};

void png_read_from_memory(png_structp png, png_bytep out, size_t count) {
  auto* state = static_cast<PngState*>(png_get_io_ptr(png));
  if (count > state->size - state->offset) png_error(png, "unexpected end of file (truncated)");
  std::memcpy(out, state->data + state->offset, count);
  state->offset += count;
}

void png_fail(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof(state->message), "%s", message);
  png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

// Raw decoded samples after libpng's expansions: 1 (gray) or 3 (RGB)
// channels of 8 or 16 bits (16-bit big-endian).
struct PngRaw {
  uint32_t width = 0, height = 0;
  int channels = 0, bit_depth = 0;
  int significant_bits = 0;  // from sBIT, 0 when absent
  std::vector<uint8_t> bytes;
  std::vector<png_bytep> rows;
};

bool decode_png_raw(PngState& state, PngRaw& raw) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_fail, png_ignore_warning);
  if (png == nullptr) {
    std::snprintf(state.message, sizeof(state.message), "out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(state.message, sizeof(state.message), "out of memory");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, &state, png_read_from_memory);
  // Chest X-rays can be large; libpng's default limit is 1,000,000 per side.
  png_set_user_limits(png, 65535, 65535);
  png_read_info(png, info);
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  png_color_8p sbit = nullptr;
  if (png_get_sBIT(png, info, &sbit) && sbit != nullptr) {
    if (color_type & PNG_COLOR_MASK_COLOR) {
      raw.significant_bits = std::max({sbit->red, sbit->green, sbit->blue});
    } else {
      raw.significant_bits = sbit->gray;
    }
  }
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  raw.width = png_get_image_width(png, info);
  raw.height = png_get_image_height(png, info);
  raw.channels = png_get_channels(png, info);
  raw.bit_depth = png_get_bit_depth(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  raw.bytes.resize(row_bytes * raw.height);
  raw.rows.resize(raw.height);
  for (uint32_t y = 0; y < raw.height; ++y) raw.rows[y] = raw.bytes.data() + y * row_bytes;
  png_read_image(png, raw.rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

inline uint8_t luminance(uint32_t r, uint32_t g, uint32_t b) {
  return static_cast<uint8_t>((19595 * r + 38470 * g + 7471 * b + 32768) >> 16);
}

GrayImage decode_png(const uint8_t* data, size_t size, const std::string& name, DecodeNotes* notes) {
  PngState state;
  state.data = data;
  state.size = size;
  PngRaw raw;
  MGCA_CHECK(decode_png_raw(state, raw), "'{}': PNG decoding failed: {}", name, state.message);
  MGCA_CHECK(raw.width > 0 && raw.height > 0, "'{}': PNG has no pixels", name);
  MGCA_CHECK((raw.channels == 1 || raw.channels == 3) && (raw.bit_depth == 8 || raw.bit_depth == 16),
             "'{}': unsupported PNG layout ({} channels of {} bits after expansion)", name, raw.channels,
             raw.bit_depth);
  GrayImage image;
  image.width = raw.width;
  image.height = raw.height;
  const size_t n = static_cast<size_t>(raw.width) * raw.height;
  image.pixels.resize(n);
  if (notes) {
    notes->sixteen_bit = raw.bit_depth == 16;
    notes->color = raw.channels == 3;
  }
  if (raw.bit_depth == 8) {
    if (raw.channels == 1) {
      std::memcpy(image.pixels.data(), raw.bytes.data(), n);
    } else {
      const uint8_t* p = raw.bytes.data();
      for (size_t i = 0; i < n; ++i, p += 3) image.pixels[i] = luminance(p[0], p[1], p[2]);
    }
    return image;
  }
  const int bits = raw.significant_bits >= 1 && raw.significant_bits <= 16 ? raw.significant_bits : 16;
  const uint32_t max_value = (1u << bits) - 1;
  const auto to8 = [max_value](const uint8_t* p) -> uint32_t {
    const uint32_t v = std::min<uint32_t>((uint32_t{p[0]} << 8) | p[1], max_value);
    return (v * 255 + max_value / 2) / max_value;
  };
  const uint8_t* p = raw.bytes.data();
  if (raw.channels == 1) {
    for (size_t i = 0; i < n; ++i, p += 2) image.pixels[i] = static_cast<uint8_t>(to8(p));
  } else {
    for (size_t i = 0; i < n; ++i, p += 6) image.pixels[i] = luminance(to8(p), to8(p + 2), to8(p + 4));
  }
  return image;
}

struct TurboHandle {
  tjhandle handle = tjInitDecompress();
  ~TurboHandle() {
    if (handle) tjDestroy(handle);
  }
};

GrayImage decode_jpeg(const uint8_t* data, size_t size, const std::string& name, DecodeNotes* notes) {
  thread_local TurboHandle turbo;
  MGCA_CHECK(turbo.handle != nullptr, "'{}': cannot initialise libjpeg-turbo", name);
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  auto* bytes = const_cast<unsigned char*>(data);
  const unsigned long length = static_cast<unsigned long>(size);
  if (tjDecompressHeader3(turbo.handle, bytes, length, &width, &height, &subsampling, &colorspace) != 0) {
    MGCA_FAIL("'{}': JPEG header: {}", name, tjGetErrorStr2(turbo.handle));
  }
  MGCA_CHECK(width > 0 && height > 0, "'{}': JPEG has no pixels", name);
  MGCA_CHECK(colorspace != TJCS_CMYK && colorspace != TJCS_YCCK,
             "'{}': unsupported JPEG colour space (CMYK/YCCK)", name);
  GrayImage image;
  image.width = width;
  image.height = height;
  image.pixels.resize(static_cast<size_t>(width) * static_cast<size_t>(height));
  if (tjDecompress2(turbo.handle, bytes, length, image.pixels.data(), width, 0, height, TJPF_GRAY, 0) != 0) {
    const std::string message = tjGetErrorStr2(turbo.handle);
    // Warnings leave a complete image, except for a truncated file (the
    // missing part is filled with gray): that is an error.
    MGCA_CHECK(tjGetErrorCode(turbo.handle) == TJERR_WARNING && message.find("Premature end") == std::string::npos,
               "'{}': JPEG decoding failed: {}", name, message);
    if (notes) notes->warning = message;
  }
  if (notes) notes->color = colorspace != TJCS_GRAY;
  return image;
}

// Output pixel o covers input [o*scale, (o+1)*scale): the weights of the
// input pixels it overlaps (area averaging, for shrinking).
struct Tap {
  int64_t out, in;
  float weight;
};

std::vector<Tap> area_taps(int64_t in_size, int64_t out_size) {
  std::vector<Tap> taps;
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  for (int64_t o = 0; o < out_size; ++o) {
    const double begin = static_cast<double>(o) * scale, end = begin + scale;
    for (int64_t i = static_cast<int64_t>(std::floor(begin)); i < std::min<double>(end, static_cast<double>(in_size)); ++i) {
      const double overlap = std::min(end, static_cast<double>(i + 1)) - std::max(begin, static_cast<double>(i));
      if (overlap > 1e-12) taps.push_back({o, i, static_cast<float>(overlap / scale)});
    }
  }
  return taps;
}

// OpenCV's INTER_AREA when enlarging: output pixel o takes input floor(o *
// scale) and, where its footprint crosses into the next input pixel, that
// one with the crossing fraction.
std::vector<Tap> enlarge_taps(int64_t in_size, int64_t out_size) {
  std::vector<Tap> taps;
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double inverse = static_cast<double>(out_size) / static_cast<double>(in_size);
  for (int64_t o = 0; o < out_size; ++o) {
    int64_t i = static_cast<int64_t>(std::floor(static_cast<double>(o) * scale));
    double f = static_cast<double>(o + 1) - static_cast<double>(i + 1) * inverse;
    f = f <= 0 ? 0.0 : f - std::floor(f);
    if (i >= in_size - 1) {
      i = in_size - 1;
      f = 0;
    }
    taps.push_back({o, i, static_cast<float>(1.0 - f)});
    if (f > 0) taps.push_back({o, i + 1, static_cast<float>(f)});
  }
  return taps;
}

std::vector<Tap> taps_for(int64_t in_size, int64_t out_size) {
  return out_size <= in_size ? area_taps(in_size, out_size) : enlarge_taps(in_size, out_size);
}

}  // namespace

GrayImage decode_image(const uint8_t* data, size_t size, const std::string& name, DecodeNotes* notes) {
  static const uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (notes) *notes = DecodeNotes{};
  MGCA_CHECK(size > 0, "'{}': empty file", name);
  if (size >= 8 && std::memcmp(data, kPngSignature, 8) == 0) return decode_png(data, size, name, notes);
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(data, size, name, notes);
  MGCA_FAIL("'{}': not a PNG or JPEG image (unknown signature)", name);
}

ImageFileProblem read_image_bytes(const std::filesystem::path& path, uint64_t max_bytes,
                                  std::vector<uint8_t>& bytes, std::string& detail) {
  bytes.clear();
  // O_NONBLOCK: opening a FIFO without a writer would otherwise block.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    detail = fmt::format("'{}': {}", path.string(), std::strerror(error));
    return error == ENOENT || error == ENOTDIR ? ImageFileProblem::Missing : ImageFileProblem::Unreadable;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    detail = fmt::format("'{}': fstat: {}", path.string(), std::strerror(errno));
    return ImageFileProblem::Unreadable;
  }
  if (!S_ISREG(info.st_mode)) {
    const char* kind = S_ISDIR(info.st_mode)    ? "a folder"
                       : S_ISFIFO(info.st_mode) ? "a FIFO"
                       : S_ISCHR(info.st_mode)  ? "a character device"
                       : S_ISBLK(info.st_mode)  ? "a block device"
                       : S_ISSOCK(info.st_mode) ? "a socket"
                                                : "not a regular file";
    detail = fmt::format("'{}' is {}, not an image file", path.string(), kind);
    return ImageFileProblem::NotRegularFile;
  }
  const uint64_t size = static_cast<uint64_t>(info.st_size);
  if (size > max_bytes) {
    detail = fmt::format("'{}' holds {} bytes, more than the {} bytes allowed for an image", path.string(),
                         size, max_bytes);
    return ImageFileProblem::TooLarge;
  }
  // Read at most max_bytes + 1: a file that grows while being read is still capped.
  bytes.resize(static_cast<size_t>(size));
  size_t filled = 0;
  while (true) {
    if (filled == bytes.size()) {
      if (bytes.size() > max_bytes) break;
      bytes.resize(std::min<size_t>(std::max<size_t>(bytes.size() * 2, 4096), static_cast<size_t>(max_bytes) + 1));
    }
    const ssize_t got = ::read(fd, bytes.data() + filled, bytes.size() - filled);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      detail = fmt::format("'{}': read: {}", path.string(), std::strerror(errno));
      return ImageFileProblem::Unreadable;
    }
    if (got == 0) break;
    filled += static_cast<size_t>(got);
  }
  if (filled > max_bytes) {
    detail = fmt::format("'{}' grew past the {} bytes allowed for an image while being read", path.string(),
                         max_bytes);
    bytes.clear();
    return ImageFileProblem::TooLarge;
  }
  bytes.resize(filled);
  return ImageFileProblem::None;
}

GrayImage read_image_file(const std::filesystem::path& path, DecodeNotes* notes, uint64_t max_bytes) {
  std::vector<uint8_t> bytes;
  std::string detail;
  MGCA_CHECK(read_image_bytes(path, max_bytes, bytes, detail) == ImageFileProblem::None, "{}", detail);
  return decode_image(bytes.data(), bytes.size(), path.string(), notes);
}

void resize_area(const uint8_t* in, int64_t in_w, int64_t in_h, uint8_t* out, int64_t out_w, int64_t out_h) {
  MGCA_CHECK(in_w > 0 && in_h > 0 && out_w > 0 && out_h > 0, "resize: bad sizes {}x{} -> {}x{}", in_w, in_h,
             out_w, out_h);
  if (in_w == out_w && in_h == out_h) {
    std::memcpy(out, in, static_cast<size_t>(in_w * in_h));
    return;
  }
  const auto horizontal = taps_for(in_w, out_w);
  const auto vertical = taps_for(in_h, out_h);
  // Rows first (each input row into out_w floats), then columns.
  std::vector<float> rows(static_cast<size_t>(in_h * out_w), 0.f);
  for (int64_t y = 0; y < in_h; ++y) {
    const uint8_t* src = in + y * in_w;
    float* dst = rows.data() + y * out_w;
    for (const Tap& t : horizontal) dst[t.out] += t.weight * static_cast<float>(src[t.in]);
  }
  std::vector<float> result(static_cast<size_t>(out_h * out_w), 0.f);
  for (const Tap& t : vertical) {
    const float* src = rows.data() + t.in * out_w;
    float* dst = result.data() + t.out * out_w;
    for (int64_t x = 0; x < out_w; ++x) dst[x] += t.weight * src[x];
  }
  for (size_t i = 0; i < result.size(); ++i) {
    out[i] = static_cast<uint8_t>(std::clamp<long>(std::lrint(result[i]), 0, 255));
  }
}

PadGeometry resize_and_pad_geometry(int64_t width, int64_t height, int64_t S) {
  MGCA_CHECK(S > 0 && width > 0 && height > 0, "resize_and_pad: bad sizes");
  PadGeometry g{S, S, 0, 0};
  // As MGCA: the shorter side is int(short * S / long) (truncation); ties keep both at S.
  if (height >= width) {
    g.new_w = static_cast<int64_t>(static_cast<double>(width) * (static_cast<double>(S) / static_cast<double>(height)));
  } else {
    g.new_h = static_cast<int64_t>(static_cast<double>(height) * (static_cast<double>(S) / static_cast<double>(width)));
  }
  g.new_w = std::max<int64_t>(g.new_w, 1);
  g.new_h = std::max<int64_t>(g.new_h, 1);
  g.left = (S - g.new_w) / 2;
  g.top = (S - g.new_h) / 2;
  return g;
}

io::Box box_in_stored_image(const io::Box& box, int64_t width, int64_t height, int64_t S) {
  const auto g = resize_and_pad_geometry(width, height, S);
  const double sx = static_cast<double>(g.new_w) / static_cast<double>(width);
  const double sy = static_cast<double>(g.new_h) / static_cast<double>(height);
  return {static_cast<float>(g.left + box.x0 * sx), static_cast<float>(g.top + box.y0 * sy),
          static_cast<float>(g.left + box.x1 * sx), static_cast<float>(g.top + box.y1 * sy)};
}

void mask_in_stored_image(const uint8_t* mask, int64_t width, int64_t height, int64_t S, uint8_t* out) {
  const auto g = resize_and_pad_geometry(width, height, S);
  std::memset(out, 0, static_cast<size_t>(S * S));
  for (int64_t y = 0; y < g.new_h; ++y) {
    const int64_t sy = std::min(height - 1, y * height / g.new_h);
    for (int64_t x = 0; x < g.new_w; ++x) {
      const int64_t sx = std::min(width - 1, x * width / g.new_w);
      out[(g.top + y) * S + g.left + x] = mask[sy * width + sx] ? 1 : 0;
    }
  }
}

void resize_and_pad(const GrayImage& image, int64_t S, uint8_t* out) {
  const auto g = resize_and_pad_geometry(image.width, image.height, S);
  std::vector<uint8_t> resized(static_cast<size_t>(g.new_w * g.new_h));
  resize_area(image.pixels.data(), image.width, image.height, resized.data(), g.new_w, g.new_h);
  std::memset(out, 0, static_cast<size_t>(S * S));
  for (int64_t y = 0; y < g.new_h; ++y) {
    std::memcpy(out + (g.top + y) * S + g.left, resized.data() + y * g.new_w, static_cast<size_t>(g.new_w));
  }
}

namespace {
void png_write_to_vector(png_structp png, png_bytep data, size_t length) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + length);
}
void png_flush_nothing(png_structp) {}
}  // namespace

std::vector<uint8_t> encode_png_gray(const uint8_t* pixels, int64_t width, int64_t height) {
  std::vector<uint8_t> out;
  PngState state;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, png_fail, png_ignore_warning);
  MGCA_CHECK(png != nullptr, "PNG encoder: out of memory");
  png_infop info = png_create_info_struct(png);
  if (info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    MGCA_FAIL("PNG encoding failed: {}", state.message);
  }
  png_set_write_fn(png, &out, png_write_to_vector, png_flush_nothing);
  png_set_IHDR(png, info, static_cast<uint32_t>(width), static_cast<uint32_t>(height), 8, PNG_COLOR_TYPE_GRAY,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int64_t y = 0; y < height; ++y) png_write_row(png, const_cast<png_bytep>(pixels + y * width));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

}  // namespace mgca::data
