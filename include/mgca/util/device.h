// Which device a rank computes on: the one rule of `mgca train` and `mgca eval`.
// Local to the calling rank; ranks on one host take different GPUs.
#pragma once

#include <torch/cuda.h>
#include <torch/types.h>

#include <string_view>

#include "mgca/util/device_choice.h"
#include "mgca/util/error.h"

namespace mgca::util {

// Cpu: the CPU. Cuda: GPU `local_rank mod visible GPUs`; an error naming
// `setting` (e.g. "runtime.device") when no GPU is visible. Auto: as Cuda when
// a GPU is visible, else the CPU.
inline torch::Device choose_device(DeviceChoice choice, int local_rank, std::string_view setting) {
  if (choice == DeviceChoice::Cpu) return torch::kCPU;
  const bool has_cuda = torch::cuda::is_available();
  MGCA_CHECK(has_cuda || choice != DeviceChoice::Cuda, "{} = cuda but no GPU is visible to this libtorch", setting);
  if (!has_cuda) return torch::kCPU;
  const auto count = static_cast<int>(torch::cuda::device_count());
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count));
}

}  // namespace mgca::util
