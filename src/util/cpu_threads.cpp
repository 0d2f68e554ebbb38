#include "mgca/util/cpu_threads.h"

#include <dlfcn.h>

namespace mgca::util {

int blas_threads() {
  // Looked up at run time: MKL is inside libtorch_cpu, not a library we link.
  const auto getter = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "mkl_get_max_threads"));
  return getter == nullptr ? -1 : getter();
}

}  // namespace mgca::util
