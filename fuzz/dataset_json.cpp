// A dataset manifest, dataset.json (mgca/io/dataset_file.h).
#include "fuzz_support.h"
#include "mgca/io/dataset_file.h"
#include "mgca/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = mgca::fuzz::write_input("dataset/dataset.json", data, size);
  try {
    const auto manifest = mgca::io::read_manifest(path.parent_path());
    (void)manifest.num_samples();
  } catch (const mgca::Error&) {
  }
  return 0;
}
