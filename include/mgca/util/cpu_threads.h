// CPU intra-op threads reach libtorch's BLAS. PyPI's libtorch runs its GEMMs
// in the MKL linked into libtorch_cpu, whose pool at::set_num_threads sizes
// as well (ATen calls mkl_set_num_threads). That was not so with Debian's
// libtorch 1.13 and OpenBLAS, whose own pool ignored it: a one-thread rank
// ran its GEMMs on every core and results depended on OMP_NUM_THREADS. The
// unit test holds the rule for the libtorch we build against.
#pragma once

namespace mgca::util {

// MKL's thread count in this process, or -1 where libtorch carries no MKL.
int blas_threads();

}  // namespace mgca::util
