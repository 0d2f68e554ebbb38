// Image augmentations (docs/contract.md §5.4) as tight loops over float buffers.
//
// Every operation is defined as torchvision's functional op on a float
// tensor in [0, 1] (the tests compare each one and the whole pipelines with
// torchvision 0.14 for the same parameters). Parameters are drawn from the
// sample's keyed Rng, so the output depends only on (seed, epoch, index).
//
//   mgca     random crop S → crop_size, normalise (x - 0.5) / 0.5 (MGCA's DataTransforms)
//   eval     centre crop S → crop_size, normalise
//   convirt  RandomResizedCrop(crop_size, scale 0.6–1, ratio 3/4–4/3, bilinear,
//            antialias), RandomHorizontalFlip, RandomAffine(±20°, translate 0.1,
//            scale 0.95–1.05, nearest, fill 0), ColorJitter(brightness 0.6–1.4,
//            contrast 0.6–1.4, random order), GaussianBlur(23, σ 0.1–3), normalise
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mgca/util/option_types.h"
#include "mgca/util/rng.h"

namespace mgca::data {

enum class Pipeline { Mgca, Eval, Convirt };
// The `data.augment` names, in the order the job-file docs list them.
inline constexpr util::NamedValue<Pipeline> kPipelineNames[] = {
    {Pipeline::Mgca, "mgca"}, {Pipeline::Convirt, "convirt"}, {Pipeline::Eval, "eval"}};
constexpr const auto& enum_names(Pipeline) { return kPipelineNames; }

// "mgca", "convirt", "eval" (errors list the choices).
Pipeline parse_pipeline(const std::string& name);
std::string pipeline_name(Pipeline pipeline);

struct AugmentOptions {
  Pipeline pipeline = Pipeline::Mgca;
  int64_t crop_size = 224;
  float mean = 0.5f, std = 0.5f;  // normalisation
  // ConVIRT ranges.
  double crop_scale_min = 0.6, crop_scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  double flip_probability = 0.5;
  double degrees = 20.0, translate = 0.1, scale_min = 0.95, scale_max = 1.05;
  double brightness_min = 0.6, brightness_max = 1.4, contrast_min = 0.6, contrast_max = 1.4;
  int64_t blur_kernel = 23;  // odd; about 0.1 × 224 (SimCLR's choice)
  double sigma_min = 0.1, sigma_max = 3.0;
};

// The random choices of one ConVIRT augmentation, in the order drawn.
struct ConvirtParams {
  int64_t crop_top = 0, crop_left = 0, crop_height = 0, crop_width = 0;
  bool flip = false;
  double angle = 0.0;  // degrees
  int64_t translate_x = 0, translate_y = 0;
  double scale = 1.0;
  bool brightness_first = true;
  double brightness = 1.0, contrast = 1.0;
  double sigma = 1.0;
};

ConvirtParams sample_convirt_params(const AugmentOptions& options, int64_t height, int64_t width, util::Rng& rng);

// One sample: `in` is the stored S×S uint8 image; `out` receives
// crop_size² normalised floats. Thread-safe (scratch is thread-local).
void augment_image(const AugmentOptions& options, const uint8_t* in, int64_t S, util::Rng& rng, float* out);

// ConVIRT with given parameters (what augment_image does after drawing them).
void apply_convirt(const AugmentOptions& options, const ConvirtParams& params, const uint8_t* in, int64_t S,
                   float* out);

// The single operations, on row-major float images (exposed for the tests).
namespace ops {
// F.resized_crop(img, top, left, height, width, [out_h, out_w], BILINEAR, antialias=True).
void resized_crop(const float* in, int64_t in_h, int64_t in_w, int64_t top, int64_t left, int64_t height,
                  int64_t width, float* out, int64_t out_h, int64_t out_w);
void hflip(float* image, int64_t h, int64_t w);
// F.affine(img, angle, [tx, ty], scale, shear=[0, 0], NEAREST, fill=[0]); out must not alias in.
void affine_nearest(const float* in, float* out, int64_t h, int64_t w, double angle, int64_t tx, int64_t ty,
                    double scale);
void adjust_brightness(float* image, int64_t n, double factor);
void adjust_contrast(float* image, int64_t n, double factor);
// F.gaussian_blur(img, [k, k], [sigma, sigma]) with reflect padding.
void gaussian_blur(float* image, int64_t h, int64_t w, int64_t kernel, double sigma);
}  // namespace ops

}  // namespace mgca::data
