#include "mgca/eval/preprocess.h"

#include <torch/torch.h>

#include "mgca/data/augment.h"
#include "mgca/util/error.h"

namespace mgca::eval {

torch::Tensor preprocess_images(const torch::Tensor& images_uint8, int64_t crop) {
  MGCA_CHECK(images_uint8.dim() == 3 && images_uint8.size(1) == images_uint8.size(2) &&
                 images_uint8.scalar_type() == torch::kUInt8,
             "images must be uint8 [n, S, S], got {} dims", images_uint8.dim());
  const int64_t n = images_uint8.size(0), s = images_uint8.size(1);
  MGCA_CHECK(crop > 0 && crop <= s,
             "the model's crop size {} does not fit the dataset's {}-pixel images; re-import the "
             "dataset with mgca prep --image-size ≥ {}",
             crop, s, crop);
  const auto in = images_uint8.contiguous();
  auto out = torch::empty({n, 1, crop, crop}, torch::kFloat32);
  data::AugmentOptions options;
  options.pipeline = data::Pipeline::Eval;
  options.crop_size = crop;
  util::Rng unused(0);  // the eval pipeline draws nothing
  for (int64_t i = 0; i < n; ++i) {
    data::augment_image(options, in.data_ptr<uint8_t>() + i * s * s, s, unused,
                        out.data_ptr<float>() + i * crop * crop);
  }
  return out;
}

}  // namespace mgca::eval
