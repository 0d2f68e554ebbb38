# cmake -D file=ELF -P scripts/remove-rpath.cmake: drops the RPATH/RUNPATH of
# one ELF file (scripts/gpu-bundle; CMake's own ELF editor, no patchelf).
file(RPATH_REMOVE FILE "${file}")
