// The host allocator's policy for a training process.
//
// glibc's malloc serves a block above its mmap threshold (dynamic, 128 KiB up
// to 32 MiB) with fresh pages from mmap and unmaps it on free, and it returns
// a freed heap top above its trim threshold to the kernel. A train step
// allocates and frees the same activations every step, so by default it
// page-faults (and the kernel zeroes) them again every step: at the real
// shapes 4–6× more page faults and a 3–5 % slower step (docs/performance.md,
// "Optimisations"). Keeping freed memory in the process, as PyTorch's caching
// allocator does on a GPU, removes that; the resident set stays at its peak,
// which a step reaches every step anyway.
#pragma once

namespace mgca::util {

// Raises glibc's mmap threshold to its maximum (32 MiB; larger blocks are
// still mapped and unmapped) and switches off trimming, for this process.
// Does nothing, and returns false, where malloc is not glibc's (another C
// library, AddressSanitizer) or the environment's GLIBC_TUNABLES sets a
// malloc tunable (the user's choice wins).
// Call it first in main(): it applies to allocations made after it.
bool retain_freed_host_memory();

}  // namespace mgca::util
