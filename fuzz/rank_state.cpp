// A checkpoint's rank-NNNNN.state (mgca/train/checkpoint_files.h): the input
// as the whole file (the checksum line catches almost every mutation), and
// the input as the archive under a valid checksum (reaching the parser).
#include <string>

#include "mgca/io/dataset_file.h"
#include "mgca/train/checkpoint_files.h"
#include "mgca/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (const std::string& file :
       {text, "mgca-rank-state sha256 " + mgca::io::sha256_hex(text.data(), text.size()) + "\n" + text}) {
    try {
      (void)mgca::train::deserialize_rank_state(file, "fuzz/rank-00000.state");
    } catch (const mgca::Error&) {
    }
  }
  return 0;
}

