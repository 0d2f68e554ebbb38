// The safetensors header of a whole file (mgca/io/safetensors_header.h).
#include "mgca/io/safetensors_header.h"
#include "mgca/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto header = mgca::io::parse_safetensors_header(data, size, "fuzz.safetensors");
    for (const auto& name : header.order) (void)header.infos.at(name).numel();
  } catch (const mgca::Error&) {
  }
  return 0;
}
