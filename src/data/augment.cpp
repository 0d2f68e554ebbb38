#include "mgca/data/augment.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "mgca/util/error.h"

namespace mgca::data {
namespace {

// torchvision's ToTensor (v / 255) followed by an affine map, as a table:
// bit-identical to doing it per pixel, without a division per pixel.
std::array<float, 256> byte_table(float mean, float std) {
  std::array<float, 256> table{};
  for (int v = 0; v < 256; ++v) table[static_cast<size_t>(v)] = (static_cast<float>(v) / 255.f - mean) / std;
  return table;
}

struct Scratch {
  std::vector<float> a, b, c;
  float* get(std::vector<float>& buffer, int64_t n) {
    if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
    return buffer.data();
  }
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Taps of PyTorch's antialiased bilinear resampling along one axis
// (_compute_indices_weights_aa): a triangle filter widened by the scale when
// shrinking, weights normalised to sum 1.
struct AxisTaps {
  std::vector<int64_t> first;   // first input index per output
  std::vector<int64_t> count;   // taps per output
  std::vector<float> weights;   // count[o] weights per output, packed with stride `stride`
  int64_t stride = 0;
};

AxisTaps aa_taps(int64_t in_size, int64_t out_size) {
  AxisTaps taps;
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double support = scale >= 1.0 ? scale : 1.0;
  const double inverse = scale >= 1.0 ? 1.0 / scale : 1.0;
  taps.stride = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  taps.first.resize(static_cast<size_t>(out_size));
  taps.count.resize(static_cast<size_t>(out_size));
  taps.weights.assign(static_cast<size_t>(out_size * taps.stride), 0.f);
  for (int64_t o = 0; o < out_size; ++o) {
    const double center = scale * (static_cast<double>(o) + 0.5);
    const int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size) - lo;
    double total = 0;
    float* w = taps.weights.data() + o * taps.stride;
    for (int64_t j = 0; j < n; ++j) {
      const double x = (static_cast<double>(j + lo) - center + 0.5) * inverse;
      const double value = std::max(0.0, 1.0 - std::fabs(x));
      w[j] = static_cast<float>(value);
      total += value;
    }
    if (total != 0.0) {
      for (int64_t j = 0; j < n; ++j) w[j] = static_cast<float>(w[j] / total);
    }
    taps.first[static_cast<size_t>(o)] = lo;
    taps.count[static_cast<size_t>(o)] = n;
  }
  return taps;
}

inline int64_t reflect(int64_t i, int64_t n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

// dst[x] = sum_j weights[j] * sources[j][x], four taps per pass over dst
// (vectorised over x; fewer loads and stores of dst than one tap per pass).
void accumulate_taps(float* dst, int64_t w, const float* weights, const std::vector<const float*>& sources) {
  std::fill(dst, dst + w, 0.f);
  const size_t n = sources.size();
  size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const float k0 = weights[j], k1 = weights[j + 1], k2 = weights[j + 2], k3 = weights[j + 3];
    const float *s0 = sources[j], *s1 = sources[j + 1], *s2 = sources[j + 2], *s3 = sources[j + 3];
    for (int64_t x = 0; x < w; ++x) dst[x] += (k0 * s0[x] + k1 * s1[x]) + (k2 * s2[x] + k3 * s3[x]);
  }
  for (; j < n; ++j) {
    const float kj = weights[j];
    const float* s = sources[j];
    for (int64_t x = 0; x < w; ++x) dst[x] += kj * s[x];
  }
}

}  // namespace

Pipeline parse_pipeline(const std::string& name) {
  if (auto pipeline = util::enum_from_name<Pipeline>(name)) return *pipeline;
  MGCA_FAIL("unknown augmentation pipeline '{}' ({})", name, util::enum_choices<Pipeline>());
}

std::string pipeline_name(Pipeline pipeline) { return util::enum_name(pipeline); }

namespace ops {

void resized_crop(const float* in, int64_t in_h, int64_t in_w, int64_t top, int64_t left, int64_t height,
                  int64_t width, float* out, int64_t out_h, int64_t out_w) {
  MGCA_CHECK(top >= 0 && left >= 0 && height > 0 && width > 0 && top + height <= in_h && left + width <= in_w,
             "resized_crop: region ({}, {}, {}, {}) outside {}x{}", top, left, height, width, in_h, in_w);
  const AxisTaps horizontal = aa_taps(width, out_w);
  const AxisTaps vertical = aa_taps(height, out_h);
  // Width first (as PyTorch's separable kernel), into height × out_w.
  float* rows = scratch().get(scratch().c, height * out_w);
  for (int64_t y = 0; y < height; ++y) {
    const float* src = in + (top + y) * in_w + left;
    float* dst = rows + y * out_w;
    for (int64_t x = 0; x < out_w; ++x) {
      const float* w = horizontal.weights.data() + x * horizontal.stride;
      const float* s = src + horizontal.first[static_cast<size_t>(x)];
      float sum = 0.f;
      for (int64_t j = 0; j < horizontal.count[static_cast<size_t>(x)]; ++j) sum += w[j] * s[j];
      dst[x] = sum;
    }
  }
  for (int64_t y = 0; y < out_h; ++y) {
    const float* w = vertical.weights.data() + y * vertical.stride;
    const float* base = rows + vertical.first[static_cast<size_t>(y)] * out_w;
    float* dst = out + y * out_w;
    std::fill(dst, dst + out_w, 0.f);
    for (int64_t j = 0; j < vertical.count[static_cast<size_t>(y)]; ++j) {
      const float wj = w[j];
      const float* src = base + j * out_w;
      for (int64_t x = 0; x < out_w; ++x) dst[x] += wj * src[x];
    }
  }
}

void hflip(float* image, int64_t h, int64_t w) {
  for (int64_t y = 0; y < h; ++y) std::reverse(image + y * w, image + (y + 1) * w);
}

void affine_nearest(const float* in, float* out, int64_t h, int64_t w, double angle, int64_t tx, int64_t ty,
                    double scale) {
  // torchvision's _get_inverse_affine_matrix with centre (0, 0) (the tensor
  // path works relative to the image centre) and no shear, then
  // grid_sample(nearest, align_corners=False) over pixel centres.
  const double rot = angle * M_PI / 180.0;
  const double m0 = std::cos(rot) / scale, m1 = std::sin(rot) / scale;
  const double m3 = -std::sin(rot) / scale, m4 = std::cos(rot) / scale;
  const double m2 = m0 * static_cast<double>(-tx) + m1 * static_cast<double>(-ty);
  const double m5 = m3 * static_cast<double>(-tx) + m4 * static_cast<double>(-ty);
  const double cx = 0.5 * static_cast<double>(w - 1), cy = 0.5 * static_cast<double>(h - 1);
  // Round half to even (as nearbyint, which grid_sample uses) without a
  // library call: adding 1.5 * 2^52 leaves the rounded integer in a double.
  constexpr double kRound = 6755399441055744.0;
  const double fw = static_cast<double>(w), fh = static_cast<double>(h);
  for (int64_t y = 0; y < h; ++y) {
    const double yc = static_cast<double>(y) - cy;
    const double row_x = m1 * yc + m2 + cx - m0 * cx, row_y = m4 * yc + m5 + cy - m3 * cx;
    float* dst = out + y * w;
    for (int64_t x = 0; x < w; ++x) {
      const double sx = (m0 * static_cast<double>(x) + row_x + kRound) - kRound;
      const double sy = (m3 * static_cast<double>(x) + row_y + kRound) - kRound;
      const bool inside = sx >= 0 && sy >= 0 && sx < fw && sy < fh;
      dst[x] = inside ? in[static_cast<int64_t>(sy) * w + static_cast<int64_t>(sx)] : 0.f;
    }
  }
}

void adjust_brightness(float* image, int64_t n, double factor) {
  const float f = static_cast<float>(factor);
  for (int64_t i = 0; i < n; ++i) image[i] = std::min(std::max(f * image[i], 0.f), 1.f);
}

void adjust_contrast(float* image, int64_t n, double factor) {
  // Eight partial sums: independent chains the compiler can vectorise.
  double partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) partial[j] += image[i + j];
  }
  double total = 0;
  for (; i < n; ++i) total += image[i];
  for (double p : partial) total += p;
  const float mean = static_cast<float>(total / static_cast<double>(n));
  const float f = static_cast<float>(factor), offset = (1.f - f) * mean;
  for (int64_t k = 0; k < n; ++k) image[k] = std::min(std::max(f * image[k] + offset, 0.f), 1.f);
}

void gaussian_blur(float* image, int64_t h, int64_t w, int64_t kernel, double sigma) {
  MGCA_CHECK(kernel % 2 == 1 && kernel / 2 < std::min(h, w) && sigma > 0, "gaussian_blur: kernel {} sigma {} on {}x{}",
             kernel, sigma, h, w);
  std::vector<float> k(static_cast<size_t>(kernel));
  const double half = 0.5 * static_cast<double>(kernel - 1);
  double total = 0;
  for (int64_t i = 0; i < kernel; ++i) {
    const double x = (-half + static_cast<double>(i)) / sigma;
    total += (k[static_cast<size_t>(i)] = static_cast<float>(std::exp(-0.5 * x * x)));
  }
  for (auto& v : k) v = static_cast<float>(v / total);
  const int64_t r = kernel / 2;
  // Taps below 1e-9 change no output by more than float rounding (the
  // weights sum to 1): small sigmas use a short kernel.
  int64_t first = 0;
  while (first < r && k[static_cast<size_t>(first)] < 1e-9f) ++first;
  const int64_t last = kernel - 1 - first;
  // Horizontal pass into tmp (tap-outer loops vectorise over x), then vertical.
  float* tmp = scratch().get(scratch().b, h * w);
  std::vector<float> row(static_cast<size_t>(w + 2 * r));
  std::vector<const float*> sources;
  for (int64_t j = first; j <= last; ++j) sources.push_back(row.data() + j);
  for (int64_t y = 0; y < h; ++y) {
    const float* src = image + y * w;
    for (int64_t x = -r; x < w + r; ++x) row[static_cast<size_t>(x + r)] = src[reflect(x, w)];
    accumulate_taps(tmp + y * w, w, k.data() + first, sources);
  }
  for (int64_t y = 0; y < h; ++y) {
    sources.clear();
    for (int64_t j = first; j <= last; ++j) sources.push_back(tmp + reflect(y - r + j, h) * w);
    accumulate_taps(image + y * w, w, k.data() + first, sources);
  }
}

}  // namespace ops

ConvirtParams sample_convirt_params(const AugmentOptions& o, int64_t height, int64_t width, util::Rng& rng) {
  ConvirtParams p;
  // RandomResizedCrop.get_params.
  const double area = static_cast<double>(height * width);
  const double log_lo = std::log(o.ratio_min), log_hi = std::log(o.ratio_max);
  bool found = false;
  for (int attempt = 0; attempt < 10 && !found; ++attempt) {
    const double target = area * rng.uniform(o.crop_scale_min, o.crop_scale_max);
    const double ratio = std::exp(rng.uniform(log_lo, log_hi));
    const auto w = static_cast<int64_t>(std::nearbyint(std::sqrt(target * ratio)));
    const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(target / ratio)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      p.crop_top = rng.randint(0, height - h + 1);
      p.crop_left = rng.randint(0, width - w + 1);
      p.crop_height = h;
      p.crop_width = w;
      found = true;
    }
  }
  if (!found) {  // torchvision's fallback: the central crop at the nearest allowed ratio
    const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
    int64_t w = width, h = height;
    if (in_ratio < o.ratio_min) {
      h = static_cast<int64_t>(std::nearbyint(static_cast<double>(w) / o.ratio_min));
    } else if (in_ratio > o.ratio_max) {
      w = static_cast<int64_t>(std::nearbyint(static_cast<double>(h) * o.ratio_max));
    }
    p.crop_top = (height - h) / 2;
    p.crop_left = (width - w) / 2;
    p.crop_height = h;
    p.crop_width = w;
  }
  p.flip = rng.bernoulli(o.flip_probability);
  // RandomAffine.get_params on the crop_size image.
  p.angle = rng.uniform(-o.degrees, o.degrees);
  const double max_dx = o.translate * static_cast<double>(o.crop_size);
  p.translate_x = static_cast<int64_t>(std::nearbyint(rng.uniform(-max_dx, max_dx)));
  p.translate_y = static_cast<int64_t>(std::nearbyint(rng.uniform(-max_dx, max_dx)));
  p.scale = rng.uniform(o.scale_min, o.scale_max);
  p.brightness_first = rng.bernoulli(0.5);
  p.brightness = rng.uniform(o.brightness_min, o.brightness_max);
  p.contrast = rng.uniform(o.contrast_min, o.contrast_max);
  p.sigma = rng.uniform(o.sigma_min, o.sigma_max);
  return p;
}

void apply_convirt(const AugmentOptions& o, const ConvirtParams& p, const uint8_t* in, int64_t S, float* out) {
  static const std::array<float, 256> to_unit = byte_table(0.f, 1.f);
  const int64_t C = o.crop_size, n = C * C;
  Scratch& s = scratch();
  float* unit = s.get(s.a, S * S);
  for (int64_t i = 0; i < S * S; ++i) unit[i] = to_unit[in[i]];
  // The crop goes straight into `out`; the affine needs a second buffer.
  ops::resized_crop(unit, S, S, p.crop_top, p.crop_left, p.crop_height, p.crop_width, out, C, C);
  if (p.flip) ops::hflip(out, C, C);
  float* moved = s.get(s.a, n);  // `unit` is no longer needed
  ops::affine_nearest(out, moved, C, C, p.angle, p.translate_x, p.translate_y, p.scale);
  if (p.brightness_first) {
    ops::adjust_brightness(moved, n, p.brightness);
    ops::adjust_contrast(moved, n, p.contrast);
  } else {
    ops::adjust_contrast(moved, n, p.contrast);
    ops::adjust_brightness(moved, n, p.brightness);
  }
  ops::gaussian_blur(moved, C, C, o.blur_kernel, p.sigma);
  for (int64_t i = 0; i < n; ++i) out[i] = (moved[i] - o.mean) / o.std;
}

void augment_image(const AugmentOptions& o, const uint8_t* in, int64_t S, util::Rng& rng, float* out) {
  const int64_t C = o.crop_size;
  MGCA_CHECK(C > 0 && C <= S, "crop size {} does not fit the {}-pixel images", C, S);
  if (o.pipeline == Pipeline::Convirt) {
    apply_convirt(o, sample_convirt_params(o, S, S, rng), in, S, out);
    return;
  }
  // MGCA: RandomCrop (torchvision: top = randint(0, S - C + 1)) or CenterCrop
  // (top = round((S - C) / 2)), then ToTensor and Normalize.
  int64_t top = 0, left = 0;
  if (o.pipeline == Pipeline::Mgca) {
    top = rng.randint(0, S - C + 1);
    left = rng.randint(0, S - C + 1);
  } else {
    top = left = static_cast<int64_t>(std::nearbyint(static_cast<double>(S - C) / 2.0));
  }
  thread_local std::array<float, 256> table{};
  thread_local float table_mean = NAN, table_std = NAN;
  if (table_mean != o.mean || table_std != o.std) {
    table = byte_table(o.mean, o.std);
    table_mean = o.mean;
    table_std = o.std;
  }
  for (int64_t y = 0; y < C; ++y) {
    const uint8_t* src = in + (top + y) * S + left;
    float* dst = out + y * C;
    for (int64_t x = 0; x < C; ++x) dst[x] = table[src[x]];
  }
}

}  // namespace mgca::data
