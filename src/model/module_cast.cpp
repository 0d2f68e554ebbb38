#include "mgca/model/module_cast.h"

#include <torch/torch.h>

#include "mgca/util/error.h"

namespace mgca::model {

void to_device_and_dtype(torch::nn::Module& module, c10::Device device, c10::ScalarType dtype) {
  MGCA_CHECK(c10::isFloatingType(dtype), "to_device_and_dtype: {} is not a floating-point type",
             c10::toString(dtype));
  torch::NoGradGuard no_grad;
  const auto move = [&](torch::Tensor& tensor) {
    if (!tensor.defined()) return;
    const auto target = c10::isFloatingType(tensor.scalar_type()) ? dtype : tensor.scalar_type();
    if (tensor.device() == device && tensor.scalar_type() == target) return;
    tensor.set_data(tensor.to(device, target));
  };
  for (auto& item : module.named_parameters(/*recurse=*/true)) move(item.value());
  for (auto& item : module.named_buffers(/*recurse=*/true)) move(item.value());
}

}  // namespace mgca::model
