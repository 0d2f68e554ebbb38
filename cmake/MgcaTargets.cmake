# Target conventions shared by every module, test and benchmark.
#
# Build cost is dominated by <torch/torch.h> (~11 s and 1 GB per file), so it
# is precompiled once (mgca_torch_pch) and reused by every target that asks
# for torch; sources that do not need torch are listed as SOURCES and skip it.

set(MGCA_WARNINGS -Wall -Wextra -Winvalid-pch)

# Unity builds: each target compiles its sources in batches of 16 files. Even
# with the PCH, a file that includes torch pays ~3–6 s to load the 690 MB
# precompiled header and re-instantiates the same templates; batching pays
# that once per batch. Measured from an empty build folder on 2 cores
# (docs/performance.md, "Build time"): `mgca` takes 275 CPU s instead of
# 856. The price: a change recompiles its whole batch, and file-local names
# (anonymous namespaces) must be unique within a target. Developers iterating
# on one file can configure with -DMGCA_UNITY_BUILD=OFF.
option(MGCA_UNITY_BUILD "compile each target's sources in batches (unity build)" ON)
if(MGCA_UNITY_BUILD)
  set(CMAKE_UNITY_BUILD ON)
  set(CMAKE_UNITY_BUILD_BATCH_SIZE 16)
endif()
# __FILE__ (error messages' file:line, gtest's) and the debug info's paths
# relative to the source tree: the same text in every clone, so the
# machine-wide compiler cache (scripts/build) serves a fresh clone at another
# path. Without it each unity batch (#include "/abs/path.cpp") expands
# __FILE__ to the clone's path, and with -g (debug-asan, fuzz) ccache hashes
# the build folder's path: both missed in every other clone. One flag for
# every target, so the torch PCH stays valid.
add_compile_options(-ffile-prefix-map=${CMAKE_SOURCE_DIR}/=)
if(MGCA_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

# Build-wide facts go into one generated header instead of per-target -D
# flags: that keeps every target's flags equal so the torch PCH stays valid.
configure_file(${CMAKE_SOURCE_DIR}/cmake/build_config.h.in
               ${CMAKE_BINARY_DIR}/include/mgca/build_config.h @ONLY)

function(mgca_target_defaults target)
  target_compile_options(${target} PRIVATE ${MGCA_WARNINGS})
  target_include_directories(${target} PUBLIC
    ${CMAKE_SOURCE_DIR}/include ${CMAKE_BINARY_DIR}/include)
endfunction()

add_library(mgca_torch_pch OBJECT ${CMAKE_SOURCE_DIR}/cmake/pch_anchor.cpp)
target_link_libraries(mgca_torch_pch PUBLIC ${MGCA_TORCH_LINK})
mgca_target_defaults(mgca_torch_pch)
if(MGCA_TORCH_PCH)
  target_precompile_headers(mgca_torch_pch PRIVATE <torch/torch.h>)
endif()

# mgca_use_torch(target): link libtorch and reuse the shared PCH.
function(mgca_use_torch target)
  target_link_libraries(${target} PUBLIC ${MGCA_TORCH_LINK})
  if(MGCA_TORCH_PCH)
    target_precompile_headers(${target} REUSE_FROM mgca_torch_pch)
  endif()
endfunction()

# mgca_add_module(name
#     [SOURCES a.cpp ...]        files that do not include torch
#     [TORCH_SOURCES b.cpp ...]  files that do (they get the PCH)
#     [DEPS mgca_util ...]       public link dependencies
#     [PRIVATE_DEPS ...])
# Creates the static library mgca_<name> and records it for mgca_all.
function(mgca_add_module name)
  cmake_parse_arguments(M "" "" "SOURCES;TORCH_SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  set(target mgca_${name})
  add_library(${target} STATIC ${M_SOURCES} ${M_TORCH_SOURCES})
  mgca_target_defaults(${target})
  target_link_libraries(${target} PUBLIC ${M_DEPS} PRIVATE ${M_PRIVATE_DEPS})
  if(M_TORCH_SOURCES)
    mgca_use_torch(${target})
    if(M_SOURCES)
      set_source_files_properties(${M_SOURCES} TARGET_DIRECTORY ${target}
                                  PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
    endif()
  endif()
  set_property(GLOBAL APPEND PROPERTY MGCA_MODULE_TARGETS ${target})
endfunction()
