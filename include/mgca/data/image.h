// Image decoding to 8-bit grayscale and MGCA's preprocessing (docs/contract.md §5.1-5.2).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "mgca/io/dataset_file.h"

namespace mgca::data {

struct GrayImage {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // height × width, row-major
};

// What decoding had to do (the importers count these as notes).
struct DecodeNotes {
  bool sixteen_bit = false;  // 16-bit samples scaled to 8 bits
  bool color = false;        // colour converted to gray
  std::string warning;       // a recoverable decoder warning (JPEG), else empty
};

// PNG: 1/2/4/8/16-bit gray, gray+alpha, RGB, RGBA and palette. Alpha is
// dropped (as OpenCV's grayscale read does); colour becomes
// L = (19595 R + 38470 G + 7471 B + 32768) >> 16 (ITU-R 601, PIL's "L");
// 16-bit samples v become round(v * 255 / max), max = 2^sBIT - 1 when the file
// has an sBIT chunk (12-bit data in 16-bit files) else 65535, clamped.
// JPEG: decoded straight to luminance by libjpeg-turbo (as OpenCV's and
// MGCA's grayscale read). Errors (truncated data, not an image, unsupported
// colour space) are mgca::Error naming `name`.
GrayImage decode_image(const uint8_t* data, size_t size, const std::string& name,
                       DecodeNotes* notes = nullptr);

// The largest image file read by default: a chest X-ray is at most tens of
// MB, so anything bigger is not one, and an endless or huge file is refused
// instead of read until memory runs out.
inline constexpr uint64_t kDefaultMaxImageFileBytes = uint64_t{256} << 20;

// Why an image path could not be read.
enum class ImageFileProblem { None, Missing, NotRegularFile, TooLarge, Unreadable };

// Reads the whole file at `path` into `bytes` when it is a regular file of at
// most max_bytes. A folder, a device (/dev/zero) or a FIFO is never read
// from: it is opened non-blocking and refused after fstat, so nothing blocks
// and nothing reads without bound. Otherwise returns the problem, with
// `detail` naming the file and what was found.
ImageFileProblem read_image_bytes(const std::filesystem::path& path, uint64_t max_bytes,
                                  std::vector<uint8_t>& bytes, std::string& detail);
// read_image_bytes + decode_image; any problem is an mgca::Error naming the file.
GrayImage read_image_file(const std::filesystem::path& path, DecodeNotes* notes = nullptr,
                          uint64_t max_bytes = kDefaultMaxImageFileBytes);

// MGCA's resize_img: the longer side becomes S (the shorter one
// floor(short * S / long)), area averaging when shrinking and bilinear
// (half-pixel centres) when enlarging, as OpenCV's INTER_AREA; then zero
// padding to S×S with floor(pad/2) before and the rest after. out: S*S bytes.
void resize_and_pad(const GrayImage& image, int64_t S, uint8_t* out);

// Where resize_and_pad puts a width × height image in the S × S square: the
// resized size and the padding before it.
struct PadGeometry {
  int64_t new_w = 0, new_h = 0, left = 0, top = 0;
};
PadGeometry resize_and_pad_geometry(int64_t width, int64_t height, int64_t S);
// A 0/1 mask of a width × height source image → the stored S × S layout
// (nearest neighbour, source pixel floor(dst · src / dst_size) as OpenCV's
// INTER_NEAREST; 0 in the padding). out: S*S bytes.
void mask_in_stored_image(const uint8_t* mask, int64_t width, int64_t height, int64_t S, uint8_t* out);
// A box in source-image pixels → the same region in the stored S × S image.
io::Box box_in_stored_image(const io::Box& box, int64_t width, int64_t height, int64_t S);

// Resizes a grayscale image to exactly (out_w, out_h) with the rule above.
void resize_area(const uint8_t* in, int64_t in_w, int64_t in_h, uint8_t* out, int64_t out_w,
                 int64_t out_h);

// PNG encoding of an 8-bit gray image (for tests, examples and debugging).
std::vector<uint8_t> encode_png_gray(const uint8_t* pixels, int64_t width, int64_t height);

}  // namespace mgca::data
