// A vocabulary file (mgca/text/tokenizer.h), then a fixed report through it.
#include "fuzz_support.h"
#include "mgca/text/tokenizer.h"
#include "mgca/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = mgca::fuzz::write_input("vocab.txt", data, size);
  try {
    const auto tokenizer = mgca::text::Tokenizer::from_vocab_file(path);
    (void)tokenizer.encode("No acute cardiopulmonary abnormality. Heart size normal.", 16);
  } catch (const mgca::Error&) {
  }
  return 0;
}
