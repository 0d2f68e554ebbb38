#include "mgca/util/host_memory.h"

#include <climits>
#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace mgca::util {

bool retain_freed_host_memory() {
#if defined(__GLIBC__)
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) return false;
  // glibc's ceiling for the threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX); mallopt refuses more.
  constexpr int kMmapThresholdMax = 32 * 1024 * 1024;
  return mallopt(M_MMAP_THRESHOLD, kMmapThresholdMax) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
  return false;
#endif
}

}  // namespace mgca::util
