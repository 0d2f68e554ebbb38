// An .npy header (src/data/npz.h), as read from a member of an .npz archive.
#include "mgca/util/error.h"
#include "data/npz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto header = mgca::data::parse_npy_header(data, size, "fuzz.npy");
    (void)header.item_size();
    (void)header.count();
  } catch (const mgca::Error&) {
  }
  return 0;
}
