// Moving a module to a device and a floating-point dtype the way PyTorch's
// Python `Module.to` does. libtorch's C++ `Module::to(device, dtype)` casts
// every buffer, integer ones included (BatchNorm's num_batches_tracked would
// become Float and no longer load into a fresh model), so the trainer and
// evaluation use this instead.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace torch::nn {
class Module;
}

namespace mgca::model {

// Every parameter and buffer of `module` (recursively) moves to `device`;
// the floating-point ones are cast to `dtype` (a floating type), the others
// keep theirs. Parameters stay the same Variables (optimizers built before
// the call still see them), as with Module::to.
void to_device_and_dtype(torch::nn::Module& module, c10::Device device, c10::ScalarType dtype);

}  // namespace mgca::model
