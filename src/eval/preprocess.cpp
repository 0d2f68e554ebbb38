#include "mgca/eval/preprocess.h"

#include <torch/torch.h>

#include <cmath>

#include "mgca/util/error.h"

namespace mgca::eval {

torch::Tensor preprocess_images(const torch::Tensor& images_uint8, int64_t crop) {
  MGCA_CHECK(images_uint8.dim() == 3 && images_uint8.size(1) == images_uint8.size(2),
             "images must be [n, S, S], got {} dims", images_uint8.dim());
  MGCA_CHECK(crop > 0, "crop size must be positive");
  namespace F = torch::nn::functional;
  auto x = images_uint8.to(torch::kFloat32).div(255.0).unsqueeze(1);  // [n, 1, S, S]
  const int64_t s = x.size(2);
  const int64_t resize = std::llround(static_cast<double>(crop) * 256.0 / 224.0);
  int64_t target = 0;
  if (s < crop) {
    target = crop;
  } else if (s > resize) {
    target = resize;
  }
  if (target > 0) {
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{target, target})
                              .mode(torch::kBilinear)
                              .align_corners(false)
                              .antialias(target < s));
  }
  // torchvision's CenterCrop: offset = round((side − crop)/2) with Python's
  // round (half to even).
  const int64_t diff = x.size(2) - crop;
  const int64_t half = diff / 2;
  const int64_t offset = diff % 2 == 0 ? half : (half % 2 == 0 ? half : half + 1);
  x = x.narrow(2, offset, crop).narrow(3, offset, crop);
  return x.sub(0.5).div(0.5).contiguous();
}

}  // namespace mgca::eval
