// Synthetic chest radiographs: analytic anatomy rendered in one pass over a
// float buffer, findings added inside their bounding boxes, noise and
// quantisation in a final pass. No allocation per image after the first
// (thread-local scratch), no torch.
#include "mgca/data/synth.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "mgca/util/error.h"
#include "mgca/util/rng.h"

namespace mgca::data {
namespace {

// Independent random streams of one sample.
enum SynthStream : uint64_t { kFindings = 1, kAnatomy = 2, kPixels = 3, kReport = 4 };

// std::min/max (not ?:) so that GCC emits minps/maxps and vectorises the pixel loops.
inline float clamp01(float x) { return std::min(std::max(x, 0.f), 1.f); }

struct Ellipse {
  float cx = 0, cy = 0, rx = 1, ry = 1;
  // Soft membership: 1 inside, 0 outside, a linear ramp about `edge` wide.
  float sharp = 1;
  float irx2 = 1, iry2 = 1;
  void finish(float edge) {
    irx2 = 1.f / (rx * rx);
    iry2 = 1.f / (ry * ry);
    sharp = std::min(rx, ry) / (2.f * edge);
  }
  float membership(float u, float v) const {
    const float dx = u - cx, dy = v - cy;
    return clamp01((1.f - (dx * dx * irx2 + dy * dy * iry2)) * sharp);
  }
  float top() const { return cy - ry; }
  float height() const { return 2.f * ry; }
  // Half width of the ellipse at height v (0 outside).
  float half_width(float v) const {
    const float t = (v - cy) / ry;
    return t * t >= 1.f ? 0.f : rx * std::sqrt(1.f - t * t);
  }
};

struct Anatomy {
  Ellipse body, heart;
  std::array<Ellipse, 2> lung;  // [Side::Right] is on the image's left
  float background = 0.02f, body_level = 0.5f, lung_depth = 0.3f, heart_level = 0.55f;
  float spine_level = 0.12f, spine_halfwidth = 0.04f, spine_center = 0.5f;
  float rib_amp = 0.07f, rib_spacing = 0.06f, rib_curvature = 2.f, rib_phase = 0.f, rib_thickness = 0.3f;
  std::array<float, 10 * 10> texture{};  // coarse vascular texture, bilinearly sampled
  float texture_amp = 0.05f;
  float contrast = 1.f, brightness = 0.f, noise_amp = 0.02f;
};

float sample_texture(const Anatomy& a, float u, float v) {
  const float gx = clamp01(u) * 8.999f, gy = clamp01(v) * 8.999f;
  const int ix = static_cast<int>(gx), iy = static_cast<int>(gy);
  const float fx = gx - ix, fy = gy - iy;
  const float* row0 = &a.texture[static_cast<size_t>(iy * 10 + ix)];
  const float* row1 = row0 + 10;
  return (row0[0] * (1 - fx) + row0[1] * fx) * (1 - fy) + (row1[0] * (1 - fx) + row1[1] * fx) * fy;
}

// Position inside zone `zone` of lung `l` (lateral fraction in [-1, 1] of the half width).
std::pair<float, float> zone_point(const Ellipse& l, Zone zone, float lateral, float depth = 0.5f) {
  const float v = l.top() + l.height() * (static_cast<float>(zone) + depth) / 3.f;
  return {l.cx + lateral * 0.75f * l.half_width(v), v};
}

const char* side_word(Side side) { return side == Side::Right ? "right" : "left"; }

const char* size_word(float severity) {
  return severity < 0.33f ? "small" : severity < 0.66f ? "moderate" : "large";
}

template <size_t N>
const char* pick(util::Rng& rng, const std::array<const char*, N>& options) {
  return options[static_cast<size_t>(rng.randint(0, static_cast<int64_t>(N)))];
}

std::string zone_phrase(util::Rng& rng, Side side, Zone zone) {
  static const std::array<const char*, 3> upper = {"upper zone", "upper lobe", "apex"};
  static const std::array<const char*, 3> middle = {"mid zone", "middle zone", "perihilar region"};
  static const std::array<const char*, 3> lower = {"lower zone", "lung base", "lower lobe"};
  const char* where = zone == Zone::Upper ? pick(rng, upper) : zone == Zone::Middle ? pick(rng, middle) : pick(rng, lower);
  return fmt::format("{} {}", side_word(side), where);
}

std::string present_sentence(util::Rng& rng, const PlacedFinding& f) {
  const std::string where = zone_phrase(rng, f.side, f.zone);
  const char* side = side_word(f.side);
  const char* size = size_word(f.severity);
  switch (f.kind) {
    case SynthFinding::Cardiomegaly: {
      static const std::array<const char*, 5> options = {
          "the heart is enlarged", "cardiomegaly is present", "enlarged cardiac silhouette",
          "the cardiac silhouette is enlarged", "moderate cardiomegaly"};
      return pick(rng, options);
    }
    case SynthFinding::Consolidation:
      switch (rng.randint(0, 4)) {
        case 0: return fmt::format("consolidation in the {}", where);
        case 1: return fmt::format("focal airspace opacity in the {}", where);
        case 2: return fmt::format("{} consolidation concerning for pneumonia", where);
        default: return fmt::format("patchy opacity in the {} may represent pneumonia", where);
      }
    case SynthFinding::LungNodule: {
      const int mm = 4 + static_cast<int>(f.severity * 16.f);
      switch (rng.randint(0, 3)) {
        case 0: return fmt::format("{} mm nodule in the {}", mm, where);
        case 1: return fmt::format("pulmonary nodule in the {} measuring {} mm", where, mm);
        default: return fmt::format("rounded density in the {} likely a nodule", where);
      }
    }
    case SynthFinding::PleuralEffusion:
      switch (rng.randint(0, 4)) {
        case 0: return fmt::format("{} {} pleural effusion", size, side);
        case 1: return fmt::format("there is a {} {} pleural effusion", size, side);
        case 2: return fmt::format("{} pleural effusion with blunting of the costophrenic angle", side);
        default: return fmt::format("blunting of the {} costophrenic angle consistent with effusion", side);
      }
    case SynthFinding::Pneumothorax:
      switch (rng.randint(0, 3)) {
        case 0: return fmt::format("{} {} pneumothorax", size, side);
        case 1: return fmt::format("there is a {} pneumothorax in the {}", side, where);
        default: return fmt::format("{} {} pneumothorax is seen", size, side);
      }
    case SynthFinding::SupportDevices: {
      static const std::array<const char*, 3> tip = {"upper svc", "lower svc", "right atrium"};
      const char* at = tip[static_cast<size_t>(f.zone)];
      switch (rng.randint(0, 3)) {
        case 0: return fmt::format("{} internal jugular catheter with tip in the {}", side, at);
        case 1: return fmt::format("{} sided central venous catheter terminates in the {}", side, at);
        default: return fmt::format("{} central line tip projects over the {}", side, at);
      }
    }
  }
  return "";
}

std::string absent_sentence(util::Rng& rng, SynthFinding kind) {
  switch (kind) {
    case SynthFinding::Cardiomegaly: {
      static const std::array<const char*, 4> options = {
          "heart size is normal", "normal cardiac silhouette",
          "the cardiomediastinal silhouette is within normal limits", "no cardiomegaly"};
      return pick(rng, options);
    }
    case SynthFinding::Consolidation: {
      static const std::array<const char*, 4> options = {
          "no focal consolidation", "there is no focal airspace disease",
          "no consolidation to suggest pneumonia", "lungs are clear without consolidation"};
      return pick(rng, options);
    }
    case SynthFinding::LungNodule: {
      static const std::array<const char*, 3> options = {
          "no pulmonary nodules", "no suspicious nodule or mass", "there is no nodule"};
      return pick(rng, options);
    }
    case SynthFinding::PleuralEffusion: {
      static const std::array<const char*, 4> options = {
          "no pleural effusion", "there is no pleural effusion", "no effusion is seen",
          "costophrenic angles are sharp"};
      return pick(rng, options);
    }
    case SynthFinding::Pneumothorax: {
      static const std::array<const char*, 3> options = {
          "no pneumothorax", "there is no pneumothorax", "no evidence of pneumothorax"};
      return pick(rng, options);
    }
    case SynthFinding::SupportDevices: {
      static const std::array<const char*, 2> options = {"no lines or tubes", "no support devices"};
      return pick(rng, options);
    }
  }
  return "";
}

std::vector<PlacedFinding> place_findings(const SynthOptions& options, uint64_t key) {
  util::Rng rng(util::make_key({key, kFindings}));
  std::vector<PlacedFinding> findings;
  for (int k = 0; k < kNumSynthFindings; ++k) {
    // Draw every field whether or not the finding occurs, so the stream
    // position (and other findings) do not depend on the outcome.
    const bool present = rng.bernoulli(options.prevalence);
    const Side side = rng.bernoulli(0.5) ? Side::Left : Side::Right;
    Zone zone = static_cast<Zone>(rng.randint(0, 3));
    const float severity = static_cast<float>(rng.uniform(0.15, 1.0));
    const auto kind = static_cast<SynthFinding>(k);
    if (kind == SynthFinding::PleuralEffusion) zone = Zone::Lower;
    if (kind == SynthFinding::Pneumothorax && zone == Zone::Lower) zone = Zone::Upper;
    if (present) findings.push_back({kind, side, zone, severity});
  }
  return findings;
}

Anatomy make_anatomy(util::Rng& rng, const std::vector<PlacedFinding>& findings, float edge) {
  Anatomy a;
  const auto jitter = [&](float center, float spread) {
    return center + static_cast<float>(rng.uniform(-spread, spread));
  };
  a.body = {jitter(0.5f, 0.015f), jitter(0.57f, 0.02f), jitter(0.41f, 0.03f), jitter(0.52f, 0.02f)};
  const float lung_dx = jitter(0.175f, 0.015f), lung_rx = jitter(0.125f, 0.01f);
  const float lung_top = jitter(0.16f, 0.02f), lung_bottom = jitter(0.74f, 0.03f);
  const float mid = a.body.cx;
  for (int s = 0; s < 2; ++s) {
    const float bottom = lung_bottom + (s == 1 ? 0.02f : 0.f);  // left hemidiaphragm sits lower
    Ellipse& l = a.lung[static_cast<size_t>(s)];
    l.cx = mid + (s == 0 ? -lung_dx : lung_dx) + static_cast<float>(rng.uniform(-0.006, 0.006));
    l.rx = lung_rx + static_cast<float>(rng.uniform(-0.008, 0.008));
    l.cy = 0.5f * (lung_top + bottom);
    l.ry = 0.5f * (bottom - lung_top);
    l.finish(edge);
  }
  float heart_scale_x = 1.f, heart_scale_y = 1.f;
  for (const auto& f : findings) {
    if (f.kind == SynthFinding::Cardiomegaly) {
      heart_scale_x = 1.3f + 0.3f * f.severity;
      heart_scale_y = 1.12f + 0.1f * f.severity;
    }
  }
  a.heart = {mid + jitter(0.035f, 0.01f), jitter(0.62f, 0.015f), jitter(0.105f, 0.01f) * heart_scale_x,
             jitter(0.085f, 0.008f) * heart_scale_y};
  a.heart.cy += a.heart.ry - 0.085f;  // an enlarged heart grows upward and sideways
  a.body.finish(edge);
  a.heart.finish(edge);
  a.background = static_cast<float>(rng.uniform(0.0, 0.05));
  a.body_level = static_cast<float>(rng.uniform(0.45, 0.58));
  a.lung_depth = static_cast<float>(rng.uniform(0.26, 0.34));
  a.heart_level = a.body_level + static_cast<float>(rng.uniform(0.0, 0.06));
  a.spine_center = mid;
  a.spine_halfwidth = static_cast<float>(rng.uniform(0.03, 0.045));
  a.spine_level = static_cast<float>(rng.uniform(0.08, 0.15));
  a.rib_amp = static_cast<float>(rng.uniform(0.05, 0.09));
  a.rib_spacing = static_cast<float>(rng.uniform(0.055, 0.07));
  a.rib_curvature = static_cast<float>(rng.uniform(1.5, 2.5));
  a.rib_phase = static_cast<float>(rng.uniform(0.0, 1.0));
  a.rib_thickness = static_cast<float>(rng.uniform(0.25, 0.4));
  for (auto& t : a.texture) t = static_cast<float>(rng.uniform(-1.0, 1.0));
  a.texture_amp = static_cast<float>(rng.uniform(0.03, 0.06));
  a.contrast = static_cast<float>(rng.uniform(0.85, 1.15));
  a.brightness = static_cast<float>(rng.uniform(-0.05, 0.05));
  a.noise_amp = static_cast<float>(rng.uniform(0.01, 0.03));
  return a;
}

struct SynthScratch {
  std::vector<float> value, lung;  // intensity; lung-field weight (no heart)
  std::vector<float> before;       // value before the finding being drawn (its mask)
  std::vector<float> texture_row;
  std::vector<uint16_t> noise;
};

// Pixel range [x0, x1) of the columns whose centres fall in [u0, u1].
std::pair<int64_t, int64_t> column_range(float u0, float u1, int64_t S) {
  const float scale = static_cast<float>(S);
  const int64_t x0 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(u0 * scale - 0.5f)), 0, S);
  const int64_t x1 = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(u1 * scale - 0.5f)) + 1, 0, S);
  return {x0, std::max(x0, x1)};
}

// Base anatomy. Each structure is evaluated only on the columns it can
// touch in the row (found from its ellipse), which keeps the per-pixel work
// to a few multiply-adds.
void render_anatomy(const Anatomy& a, int64_t S, float edge, SynthScratch& s) {
  const float step = 1.f / static_cast<float>(S);
  std::vector<float>& texture_row = s.texture_row;
  texture_row.resize(static_cast<size_t>(S));
  for (int64_t y = 0; y < S; ++y) {
    const float v = (static_cast<float>(y) + 0.5f) * step;
    float* value = s.value.data() + y * S;
    float* lung = s.lung.data() + y * S;
    std::fill(value, value + S, a.background);
    std::fill(lung, lung + S, 0.f);
    // Body and spine.
    const float body_half = a.body.half_width(v);
    if (body_half > 0.f) {
      const auto [x0, x1] = column_range(a.body.cx - body_half - edge, a.body.cx + body_half + edge, S);
      for (int64_t x = x0; x < x1; ++x) {
        const float u = (static_cast<float>(x) + 0.5f) * step;
        value[x] += a.body.membership(u, v) * (a.body_level - a.background);
      }
      const auto [s0, s1] = column_range(a.spine_center - a.spine_halfwidth, a.spine_center + a.spine_halfwidth, S);
      for (int64_t x = s0; x < s1; ++x) {
        const float u = (static_cast<float>(x) + 0.5f) * step;
        const float spine = clamp01(1.f - std::fabs(u - a.spine_center) / a.spine_halfwidth);
        value[x] += a.body.membership(u, v) * a.spine_level * std::min(1.f, 3.f * spine);
      }
    }
    // Heart shadow.
    const float heart_half = a.heart.half_width(v);
    if (heart_half > 0.f) {
      const auto [x0, x1] = column_range(a.heart.cx - heart_half - edge, a.heart.cx + heart_half + edge, S);
      for (int64_t x = x0; x < x1; ++x) {
        const float u = (static_cast<float>(x) + 0.5f) * step;
        value[x] += a.heart.membership(u, v) * (a.heart_level - a.body_level);
      }
    }
    // Lung fields with ribs and vascular texture. The coarse texture is
    // interpolated along y once per row, then along x per column.
    const float gy = clamp01(v) * 8.999f;
    const int iy = static_cast<int>(gy);
    const float fy = gy - static_cast<float>(iy);
    float coarse[10];
    for (int i = 0; i < 10; ++i) {
      coarse[i] = a.texture[static_cast<size_t>(iy * 10 + i)] * (1 - fy) + a.texture[static_cast<size_t>(iy * 10 + 10 + i)] * fy;
    }
    for (const Ellipse& l : a.lung) {
      const float half = l.half_width(v);
      if (half <= 0.f) continue;
      const auto [x0, x1] = column_range(l.cx - half - edge, l.cx + half + edge, S);
      for (int64_t x = x0; x < x1; ++x) {
        const float u = (static_cast<float>(x) + 0.5f) * step;
        const float gx = clamp01(u) * 8.999f;
        const int ix = static_cast<int>(gx);
        const float fx = gx - static_cast<float>(ix);
        texture_row[static_cast<size_t>(x)] = coarse[ix] * (1 - fx) + coarse[ix + 1] * fx;
      }
      for (int64_t x = x0; x < x1; ++x) {
        const float u = (static_cast<float>(x) + 0.5f) * step;
        const float ml = l.membership(u, v);
        const float field = ml * (1.f - a.heart.membership(u, v));
        // Posterior ribs: bands curving down laterally from the spine. The
        // phase is kept positive so truncation is floor.
        const float du = u - a.spine_center;
        const float phase = (v - a.rib_curvature * du * du) / a.rib_spacing + a.rib_phase + 64.f;
        const float frac = phase - static_cast<float>(static_cast<int>(phase));
        const float rib = clamp01(1.f - std::fabs(frac - 0.5f) / (0.5f * a.rib_thickness));
        value[x] += field * (-a.lung_depth + a.texture_amp * texture_row[static_cast<size_t>(x)] + a.rib_amp * rib);
        lung[x] = std::max(lung[x], field);
      }
    }
  }
}

struct PixelBox {
  int64_t x0, y0, x1, y1;  // pixel bounds, half-open
};

PixelBox box_of(float u0, float v0, float u1, float v1, int64_t S) {
  const auto to_pixel = [S](float t) {
    return std::clamp<int64_t>(static_cast<int64_t>(std::floor(t * static_cast<float>(S))), 0, S);
  };
  return {to_pixel(u0), to_pixel(v0), std::min(S, to_pixel(u1) + 1), std::min(S, to_pixel(v1) + 1)};
}

// Calls fn(x, y, u, v) over the pixels of a box.
template <typename Fn>
void for_box(const PixelBox& box, int64_t S, Fn&& fn) {
  const float step = 1.f / static_cast<float>(S);
  for (int64_t y = box.y0; y < box.y1; ++y) {
    const float v = (static_cast<float>(y) + 0.5f) * step;
    for (int64_t x = box.x0; x < box.x1; ++x) fn(x, y, (static_cast<float>(x) + 0.5f) * step, v);
  }
}

float segment_distance(float u, float v, float u0, float v0, float u1, float v1) {
  const float du = u1 - u0, dv = v1 - v0;
  const float t = clamp01(((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv + 1e-12f));
  const float eu = u - (u0 + t * du), ev = v - (v0 + t * dv);
  return std::sqrt(eu * eu + ev * ev);
}

void render_finding(const Anatomy& a, const PlacedFinding& f, util::Rng& rng, int64_t S, float edge,
                    float lesion_scale, SynthScratch& s) {
  const Ellipse& l = a.lung[static_cast<size_t>(f.side)];
  float* value = s.value.data();
  const float* lung = s.lung.data();
  // Lateral is away from the spine: -1 on the image's left lung, +1 on its right.
  const float out_sign = f.side == Side::Right ? -1.f : 1.f;
  switch (f.kind) {
    case SynthFinding::Cardiomegaly:
      return;  // drawn as part of the anatomy
    case SynthFinding::Consolidation: {
      const auto [uc, vc] = zone_point(l, f.zone, static_cast<float>(rng.uniform(-0.6, 0.6)),
                                       static_cast<float>(rng.uniform(0.35, 0.65)));
      const float r = (0.045f + 0.05f * f.severity) * lesion_scale, amp = 0.22f + 0.16f * f.severity;
      const float ir2 = 1.f / (r * r);
      const float phase_u = static_cast<float>(rng.uniform(0, 6.3)), phase_v = static_cast<float>(rng.uniform(0, 6.3));
      const float freq = 1.f / (0.35f * r);
      for_box(box_of(uc - r, vc - r, uc + r, vc + r, S), S, [&](int64_t x, int64_t y, float u, float v) {
        const float d2 = ((u - uc) * (u - uc) + (v - vc) * (v - vc)) * ir2;
        if (d2 >= 1.f) return;
        const float w = (1.f - d2) * (1.f - d2);
        const float patch = 0.75f + 0.25f * std::sin(u * freq + phase_u) * std::sin(v * freq + phase_v);
        value[y * S + x] += amp * w * patch * lung[y * S + x];
      });
      return;
    }
    case SynthFinding::LungNodule: {
      const auto [uc, vc] = zone_point(l, f.zone, static_cast<float>(rng.uniform(-0.6, 0.6)),
                                       static_cast<float>(rng.uniform(0.3, 0.7)));
      const float r = (0.018f + 0.018f * f.severity) * lesion_scale, amp = 0.35f + 0.1f * f.severity;
      const float sharp = r / edge;
      for_box(box_of(uc - r - edge, vc - r - edge, uc + r + edge, vc + r + edge, S), S,
              [&](int64_t x, int64_t y, float u, float v) {
                const float d = std::sqrt((u - uc) * (u - uc) + (v - vc) * (v - vc)) / r;
                value[y * S + x] += amp * clamp01((1.f - d) * sharp);
              });
      return;
    }
    case SynthFinding::PleuralEffusion: {
      // Fluid fills the base up to a meniscus that rises laterally.
      const float bottom = l.cy + l.ry, height = (0.12f + 0.28f * f.severity) * l.height();
      const float level = bottom - height, meniscus = 0.25f * height, amp = 0.36f;
      const float sharp = 1.f / (1.5f * edge);
      const Ellipse& lr = l;
      for_box(box_of(l.cx - l.rx - edge, level - meniscus - edge, l.cx + l.rx + edge, bottom + 0.04f, S), S,
              [&](int64_t x, int64_t y, float u, float v) {
                const float lateral = clamp01((u - lr.cx) * out_sign / lr.rx + 0.5f);
                const float surface = level - meniscus * lateral * lateral;
                const float w = clamp01((v - surface) * sharp);
                const float inside = lr.membership(u, v);
                value[y * S + x] += amp * w * std::max(inside, 0.5f * lung[y * S + x]);
              });
      return;
    }
    case SynthFinding::Pneumothorax: {
      // A lateral pocket of air without lung markings, bounded by a thin pleural line.
      const float vz = l.top() + l.height() * (static_cast<float>(f.zone) + 0.5f) / 3.f;
      const float band = l.height() * (0.25f + 0.2f * f.severity);
      const float depth = (0.25f + 0.35f * f.severity) * l.rx, line = std::max(edge, 0.006f);
      const float v0 = std::max(l.top(), vz - band);
      for_box(box_of(l.cx - l.rx, v0, l.cx + l.rx, vz + band, S), S,
              [&](int64_t x, int64_t y, float u, float v) {
                const float half = l.half_width(v);
                if (half <= 0.f) return;
                const float t = (v - vz) / band;
                const float taper = clamp01(1.f - t * t);
                const float inward = half - (u - l.cx) * out_sign;  // distance from the lateral edge
                const float pocket = depth * taper;
                const float field = lung[y * S + x];
                if (field <= 0.f || pocket <= 0.f) return;
                if (inward < pocket) {
                  const float texture = sample_texture(a, u, v);
                  value[y * S + x] -= field * (0.07f + a.texture_amp * texture + 0.5f * a.rib_amp);
                } else if (inward < pocket + line) {
                  value[y * S + x] += 0.12f * field;
                }
              });
      return;
    }
    case SynthFinding::SupportDevices: {
      // A catheter from the neck on that side down to a tip level set by the zone.
      const float neck_u = a.spine_center + out_sign * 0.09f;
      const float tip_v = 0.33f + 0.09f * static_cast<float>(f.zone);
      const std::array<std::array<float, 2>, 3> p = {{{neck_u + out_sign * 0.02f, 0.0f},
                                                       {neck_u, 0.17f},
                                                       {a.spine_center + out_sign * 0.015f, tip_v}}};
      const float half = std::max(0.004f, 0.6f * edge), amp = 0.5f;
      for (int k = 0; k < 2; ++k) {
        const auto& q0 = p[static_cast<size_t>(k)];
        const auto& q1 = p[static_cast<size_t>(k + 1)];
        const float pad = half + edge;
        for_box(box_of(std::min(q0[0], q1[0]) - pad, std::min(q0[1], q1[1]) - pad,
                       std::max(q0[0], q1[0]) + pad, std::max(q0[1], q1[1]) + pad, S),
                S, [&](int64_t x, int64_t y, float u, float v) {
                  const float d = segment_distance(u, v, q0[0], q0[1], q1[0], q1[1]);
                  const float w = clamp01((half + edge - d) / edge);
                  float& target = value[y * S + x];
                  target = std::max(target, target * (1.f - w) + (target + amp) * w);
                });
      }
      return;
    }
  }
}

void quantize(const Anatomy& a, util::Rng& rng, int64_t S, SynthScratch& s, uint8_t* out) {
  const int64_t n = S * S;
  // Triangular noise: the two bytes of a 16-bit random word per pixel.
  s.noise.resize(static_cast<size_t>((n + 3) / 4 * 4));
  for (size_t i = 0; i < s.noise.size(); i += 4) {
    const uint64_t bits = rng.next_u64();
    std::memcpy(&s.noise[i], &bits, sizeof(bits));
  }
  const float* value = s.value.data();
  const uint16_t* noise = s.noise.data();
  const float scale = a.noise_amp / 255.f;
  for (int64_t j = 0; j < n; ++j) {
    const float pair = static_cast<float>((noise[j] & 0xff) + (noise[j] >> 8));
    const float v = clamp01(value[j] * a.contrast + a.brightness + (pair * scale - a.noise_amp));
    out[j] = static_cast<uint8_t>(static_cast<int>(v * 255.f + 0.5f));
  }
}

}  // namespace

bool is_synth_lesion(SynthFinding kind) {
  return kind == SynthFinding::Consolidation || kind == SynthFinding::LungNodule ||
         kind == SynthFinding::PleuralEffusion || kind == SynthFinding::Pneumothorax;
}

const std::vector<std::string>& synth_label_names() {
  static const std::vector<std::string> names = {"Cardiomegaly", "Consolidation", "Lung Nodule",
                                                 "Pleural Effusion", "Pneumothorax", "Support Devices",
                                                 "No Finding"};
  return names;
}

static uint64_t sample_key(const SynthOptions& options, int64_t index) {
  return util::make_key({options.seed, util::fnv1a(options.split), static_cast<uint64_t>(index)});
}

std::vector<PlacedFinding> synth_findings(const SynthOptions& options, int64_t index) {
  return place_findings(options, sample_key(options, index));
}

void generate_synth_sample(const SynthOptions& options, int64_t index, SynthSample& out) {
  const int64_t S = options.image_size;
  MGCA_CHECK(S >= 32 && S <= 1024, "synth: image size must be in [32, 1024], got {}", S);
  MGCA_CHECK(options.prevalence >= 0.0 && options.prevalence <= 1.0,
             "synth: prevalence must be in [0, 1], got {}", options.prevalence);
  MGCA_CHECK(options.lesion_scale > 0.0 && options.lesion_scale <= 4.0,
             "synth: lesion scale must be in (0, 4], got {}", options.lesion_scale);
  MGCA_CHECK(index >= 0, "synth: negative index {}", index);
  const uint64_t key = sample_key(options, index);
  out.id = fmt::format("synth-{}-{:08d}", options.split, index);
  out.findings = place_findings(options, key);

  // Edges about 1.5 pixels wide at any size.
  const float edge = 1.5f / static_cast<float>(S);
  util::Rng anatomy_rng(util::make_key({key, kAnatomy}));
  const Anatomy anatomy = make_anatomy(anatomy_rng, out.findings, edge);
  thread_local SynthScratch scratch;
  scratch.value.resize(static_cast<size_t>(S * S));
  scratch.lung.resize(static_cast<size_t>(S * S));
  render_anatomy(anatomy, S, edge, scratch);
  util::Rng pixel_rng(util::make_key({key, kPixels}));
  out.mask.assign(static_cast<size_t>(S * S), 0);
  out.boxes.clear();
  for (const auto& finding : out.findings) {
    const bool lesion = is_synth_lesion(finding.kind);
    if (lesion) scratch.before = scratch.value;
    render_finding(anatomy, finding, pixel_rng, S, edge, static_cast<float>(options.lesion_scale), scratch);
    if (!lesion) continue;
    int64_t x0 = S, y0 = S, x1 = -1, y1 = -1;
    for (int64_t y = 0; y < S; ++y) {
      for (int64_t x = 0; x < S; ++x) {
        const size_t j = static_cast<size_t>(y * S + x);
        if (std::abs(scratch.value[j] - scratch.before[j]) <= kSynthMaskThreshold) continue;
        out.mask[j] = 1;
        x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
    }
    if (x1 >= 0) {
      out.boxes.push_back({static_cast<float>(x0), static_cast<float>(y0), static_cast<float>(x1 + 1),
                           static_cast<float>(y1 + 1)});
    }
  }
  out.image.resize(static_cast<size_t>(S * S));
  quantize(anatomy, pixel_rng, S, scratch, out.image.data());

  // Labels.
  out.labels.assign(synth_label_names().size(), 0.f);
  bool any_disease = false;
  for (const auto& f : out.findings) {
    out.labels[static_cast<size_t>(f.kind)] = 1.f;
    any_disease |= f.kind != SynthFinding::SupportDevices;
  }
  out.labels.back() = any_disease ? 0.f : 1.f;

  // Report: sentences for present findings, negations for a random subset
  // of absent ones, shuffled, then an impression.
  util::Rng report_rng(util::make_key({key, kReport}));
  out.sentences.clear();
  std::array<bool, kNumSynthFindings> present{};
  for (const auto& f : out.findings) {
    present[static_cast<size_t>(f.kind)] = true;
    out.sentences.push_back(present_sentence(report_rng, f));
  }
  for (int k = 0; k < kNumSynthFindings; ++k) {
    const double mention = k == static_cast<int>(SynthFinding::SupportDevices) ? 0.2 : 0.65;
    // Draw for every finding so the stream position does not depend on presence.
    const bool say = report_rng.bernoulli(mention);
    if (!present[static_cast<size_t>(k)] && say) {
      out.sentences.push_back(absent_sentence(report_rng, static_cast<SynthFinding>(k)));
    }
  }
  report_rng.shuffle(out.sentences);
  if (!any_disease) {
    static const std::array<const char*, 4> normal = {"no acute cardiopulmonary abnormality",
                                                      "no acute cardiopulmonary process",
                                                      "normal chest radiograph", "no acute disease"};
    out.sentences.push_back(pick(report_rng, normal));
  } else {
    // The impression repeats the most severe disease finding.
    const PlacedFinding* worst = nullptr;
    for (const auto& f : out.findings) {
      if (f.kind != SynthFinding::SupportDevices && (!worst || f.severity > worst->severity)) worst = &f;
    }
    out.sentences.push_back(present_sentence(report_rng, *worst));
  }
  out.report.clear();
  for (size_t i = 0; i < out.sentences.size(); ++i) {
    if (i > 0) out.report += '\n';
    out.report += out.sentences[i];
  }
}

}  // namespace mgca::data
