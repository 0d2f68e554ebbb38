# All third-party packages come from Debian (scripts/install-deps); the GPU
# preset adds a CUDA libtorch through CMAKE_PREFIX_PATH.
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)
# The C API only: keep OpenMPI's deprecated C++ bindings out (set for every target so
# all targets share the same flags and the torch PCH).
add_compile_definitions(OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
find_package(HDF5 REQUIRED COMPONENTS C CXX)
find_package(Boost REQUIRED COMPONENTS serialization)
find_package(fmt REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(CLI11 REQUIRED)
find_package(PNG REQUIRED)
find_package(libjpeg-turbo REQUIRED)
find_package(pugixml REQUIRED)
# Debian's libzip CMake config references tools that are not installed; use pkg-config.
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBZIP REQUIRED IMPORTED_TARGET libzip)
if(MGCA_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(MGCA_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()

# libtorch built with CUDA exposes the c10_cuda library; Debian's does not.
set(MGCA_TORCH_HAS_CUDA OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES OR C10_CUDA_LIBRARY)
  set(MGCA_TORCH_HAS_CUDA ON)
endif()

# The NCCL communicator on raw device pointers needs only the CUDA toolkit,
# so it is compiled and linked wherever /usr/local/cuda exists (CI included).
set(MGCA_HAVE_CUDA_TOOLKIT OFF)
set(MGCA_HAVE_NCCL OFF)
if(MGCA_WITH_CUDA)
  find_package(CUDAToolkit QUIET)
  if(CUDAToolkit_FOUND)
    set(MGCA_HAVE_CUDA_TOOLKIT ON)
    find_path(NCCL_INCLUDE_DIR nccl.h
              HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include)
    find_library(NCCL_LIBRARY nccl
                 HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_HOME}/lib)
    if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
      set(MGCA_HAVE_NCCL ON)
      add_library(mgca_nccl_external INTERFACE)
      target_include_directories(mgca_nccl_external SYSTEM INTERFACE ${NCCL_INCLUDE_DIR})
      target_link_libraries(mgca_nccl_external INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
    endif()
  endif()
endif()
if(MGCA_TORCH_HAS_CUDA AND NOT MGCA_HAVE_NCCL)
  message(FATAL_ERROR "libtorch has CUDA but NCCL was not found: set NCCL_HOME")
endif()
