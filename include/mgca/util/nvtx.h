// NVTX ranges for Nsight Systems (`nsys profile --trace=cuda,nvtx,...`,
// docs/hpc.md): a named span of the calling thread's timeline. In builds
// with CUDA (the gpu preset) it pushes and pops an NVTX range (nvtx3,
// header-only: a no-op unless a profiler is attached); in CPU builds it
// compiles to nothing. Local to the calling thread (no collectives).
#pragma once

#include "mgca/build_config.h"

#if MGCA_TORCH_HAS_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace mgca::util {

class ScopedRange {
 public:
  explicit ScopedRange([[maybe_unused]] const char* name) {
#if MGCA_TORCH_HAS_CUDA
    nvtxRangePushA(name);
#endif
  }
  ~ScopedRange() {
#if MGCA_TORCH_HAS_CUDA
    nvtxRangePop();
#endif
  }
  ScopedRange(const ScopedRange&) = delete;
  ScopedRange& operator=(const ScopedRange&) = delete;
};

}  // namespace mgca::util
