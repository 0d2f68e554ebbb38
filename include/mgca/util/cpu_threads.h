// CPU intra-op threads for libtorch *and* its BLAS. Debian's libtorch calls
// OpenBLAS (libopenblas0-pthread), which keeps its own thread pool sized at
// load time from OPENBLAS_NUM_THREADS / OMP_NUM_THREADS or the core count;
// at::set_num_threads does not reach it. Left alone, a rank asked to use one
// thread ran its GEMMs on every core (two ranks on two cores: four BLAS
// threads), and the results depended on the environment: OpenBLAS picks
// different kernels for different thread counts, so a run was bit-exact only
// under the same OMP_NUM_THREADS. Programs call compat::set_cpu_threads
// (util/torch_compat.h), which sets both pools.
#pragma once

namespace mgca::util {

// Sets OpenBLAS's thread count where OpenBLAS is loaded in this process.
// Returns false (and does nothing) where it is not (e.g. MKL or reference BLAS).
bool set_blas_threads(int threads);

// OpenBLAS's current thread count, or -1 where OpenBLAS is not loaded.
int blas_threads();

}  // namespace mgca::util
