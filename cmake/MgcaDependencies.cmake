# Third-party packages: libtorch from the project's Python virtual environment
# (PyPI's torch 2.11.0, a CUDA 13 build; scripts/install-deps), everything else
# from Debian. Every preset compiles against that one libtorch.
find_package(Threads REQUIRED)

# The venv's Python: it tells CMake where libtorch is
# (torch.utils.cmake_prefix_path) and runs the Python references in the tests.
set(MGCA_VENV "$ENV{MGCA_VENV}" CACHE PATH
    "Python virtual environment with the pinned torch (scripts/install-deps; env MGCA_VENV)")
if(NOT MGCA_VENV)
  set(MGCA_VENV /opt/mgca-venv CACHE PATH "" FORCE)
endif()
set(MGCA_PYTHON "${MGCA_VENV}/bin/python" CACHE FILEPATH "Python that runs the references")
if(NOT EXISTS "${MGCA_PYTHON}")
  message(FATAL_ERROR "mgca: no Python at ${MGCA_PYTHON}: run scripts/install-deps "
                      "(or set MGCA_VENV to the virtual environment that holds torch)")
endif()
execute_process(
  COMMAND "${MGCA_PYTHON}" -c "import os, torch, torch.utils; print(torch.utils.cmake_prefix_path + ';' + os.path.dirname(torch.__file__) + ';' + torch.__version__)"
  OUTPUT_VARIABLE _mgca_torch_facts OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _mgca_rc)
if(NOT _mgca_rc EQUAL 0)
  message(FATAL_ERROR "mgca: ${MGCA_PYTHON} cannot import torch: run scripts/install-deps")
endif()
list(GET _mgca_torch_facts 0 _mgca_torch_cmake)
list(GET _mgca_torch_facts 1 MGCA_TORCH_DIR)
list(GET _mgca_torch_facts 2 MGCA_TORCH_PY_VERSION)
get_filename_component(MGCA_SITE_PACKAGES "${MGCA_TORCH_DIR}" DIRECTORY)
list(PREPEND CMAKE_PREFIX_PATH "${_mgca_torch_cmake}")
find_package(Torch REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)
# The C API only: keep OpenMPI's deprecated C++ bindings out (set for every target so
# all targets share the same flags and the torch PCH).
add_compile_definitions(OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
find_package(HDF5 REQUIRED COMPONENTS C CXX)
find_package(Boost REQUIRED COMPONENTS serialization)
# fmt: libtorch's headers include the fmt 12 that the wheel ships
# (torch/include/fmt), so every target uses that one, header-only; Debian's
# libfmt (9) would mix two versions in one program.
add_library(mgca_fmt INTERFACE)
target_include_directories(mgca_fmt SYSTEM INTERFACE "${MGCA_TORCH_DIR}/include")
add_library(fmt::fmt ALIAS mgca_fmt)
add_compile_definitions(FMT_HEADER_ONLY=1)
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

# ---- CUDA: one runtime and one NCCL per process, the wheel's ----------------
# PyPI's torch is a CUDA build: its libraries need the CUDA 13 runtime, cuDNN,
# cuBLAS and NCCL of the nvidia-* wheels beside it (found through their RPATH).
# Its CMake config instead points CUDA::cudart and nvrtc at the toolkit in
# /usr/local/cuda, libraries with the same sonames: whichever a process meets
# first would serve both libtorch and us. So every CUDA library we link is
# the wheel's (docs/hpc.md, "One CUDA runtime, one NCCL"), and the toolkit
# serves only its compiler, which torch's CMake config requires.
set(MGCA_TORCH_HAS_CUDA OFF)
if(TARGET torch_cuda)
  set(MGCA_TORCH_HAS_CUDA ON)
endif()
set(MGCA_NVIDIA_DIR "${MGCA_SITE_PACKAGES}/nvidia")
set(MGCA_CUDART "${MGCA_NVIDIA_DIR}/cu13/lib/libcudart.so.13")
if(MGCA_TORCH_HAS_CUDA AND EXISTS "${MGCA_CUDART}")
  set_target_properties(CUDA::cudart PROPERTIES
    IMPORTED_LOCATION "${MGCA_CUDART}"
    INTERFACE_INCLUDE_DIRECTORIES "${MGCA_NVIDIA_DIR}/cu13/include")
endif()
# nvrtc serves torch's JIT fusers, which load it themselves (libcaffe2_nvrtc).
list(FILTER TORCH_LIBRARIES EXCLUDE REGEX "libnvrtc")

# Both builds compile with libtorch's CPU usage requirements alone, so that
# an object file of the gpu build equals the release build's wherever the
# source does not read mgca/build_config.h, which a compiler cache shared by
# the two (scripts/build) can exploit. Measured 2026-12-05: it does not yet
# (the gpu build cost a full build's CPU time; each build compiles its own
# torch PCH, the likely reason). torch_cuda's own
# definitions (USE_C10D_NCCL, USE_NVSHMEM) only matter to c10d's headers,
# which we do not include.
add_library(mgca_torch_cpu INTERFACE)
target_link_libraries(mgca_torch_cpu INTERFACE torch_cpu c10)
target_include_directories(mgca_torch_cpu SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})

# MGCA_WITH_CUDA=OFF (the CPU presets) links libtorch's CPU side alone, so a
# CPU program never loads libtorch_cuda; ON (the gpu preset) links all of it
# and compiles our NCCL communicator and CUDA paths.
set(MGCA_HAVE_NCCL OFF)
if(MGCA_WITH_CUDA AND MGCA_TORCH_HAS_CUDA)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS "${MGCA_NVIDIA_DIR}/nccl/include" NO_DEFAULT_PATH)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS "${MGCA_NVIDIA_DIR}/nccl/lib" NO_DEFAULT_PATH)
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
    message(FATAL_ERROR "mgca: the gpu build needs the nvidia-nccl wheel beside torch "
                        "(${MGCA_NVIDIA_DIR}/nccl): run scripts/install-deps")
  endif()
  set(MGCA_HAVE_NCCL ON)
  add_library(mgca_nccl_external INTERFACE)
  target_include_directories(mgca_nccl_external SYSTEM INTERFACE ${NCCL_INCLUDE_DIR})
  target_link_libraries(mgca_nccl_external INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
  add_library(mgca_torch_gpu INTERFACE)
  # torch_cuda_library links libtorch_cuda with --no-as-needed: loading it
  # registers libtorch's CUDA hooks even where no symbol of it is referenced.
  target_link_libraries(mgca_torch_gpu INTERFACE mgca_torch_cpu
                        $<LINK_ONLY:torch_cuda_library> $<LINK_ONLY:c10_cuda>)
  set(MGCA_TORCH_LINK mgca_torch_gpu)
else()
  set(MGCA_TORCH_HAS_CUDA OFF)
  set(MGCA_TORCH_LINK mgca_torch_cpu)
endif()
