// A MedMNIST .npz archive (zip of .npy members, src/data/npz.h) as
// `mgca prep --format medmnist` reads it: the image and label arrays listed,
// the labels read whole, the image rows streamed (prepare) and the first
// images decoded.
#include <algorithm>

#include "fuzz_support.h"
#include "mgca/data/import.h"
#include "mgca/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = mgca::fuzz::write_input("chestmnist.npz", data, size);
  mgca::data::ImportOptions options;
  options.format = "medmnist";
  options.in = path;
  try {
    auto source = mgca::data::make_import_source(options);
    const auto& items = source->items();
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(items.size()), 4);
    source->prepare(0, n);
    for (int64_t i = 0; i < n; ++i) (void)source->load_image(items[static_cast<size_t>(i)], nullptr);
  } catch (const mgca::Error&) {
  }
  return 0;
}
