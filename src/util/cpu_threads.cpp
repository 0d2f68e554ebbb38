#include "mgca/util/cpu_threads.h"

#include <dlfcn.h>

#include "mgca/util/error.h"

namespace mgca::util {
namespace {

// Looked up at run time: the BLAS libtorch uses is a Debian alternative, not
// a library this project links.
template <typename Fn>
Fn openblas_symbol(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

}  // namespace

bool set_blas_threads(int threads) {
  MGCA_CHECK(threads >= 1, "set_blas_threads: {} threads", threads);
  const auto setter = openblas_symbol<void (*)(int)>("openblas_set_num_threads");
  if (setter == nullptr) return false;
  setter(threads);
  return true;
}

int blas_threads() {
  const auto getter = openblas_symbol<int (*)()>("openblas_get_num_threads");
  return getter == nullptr ? -1 : getter();
}

}  // namespace mgca::util
