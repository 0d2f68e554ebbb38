// The one place that hides differences between libtorch 1.13 (Debian, CPU)
// and libtorch 2.x (the CUDA builds on GPU machines). Code elsewhere calls
// these wrappers instead of testing versions itself.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#define MGCA_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||       \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace mgca::compat {

inline constexpr int kTorchMajor = TORCH_VERSION_MAJOR;
inline constexpr int kTorchMinor = TORCH_VERSION_MINOR;

}  // namespace mgca::compat
