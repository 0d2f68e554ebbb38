// An Open-I (IU X-ray) report folder as `mgca prep --format openi` reads it
// (src/data/import_sources.cpp): part 0 is the report XML
// ecgen-radiology/1.xml, part 1 (optional) file2label.json, part 2
// (optional) r2gen_annotation.json. A bad XML must become a counted skip, a
// bad side file an mgca::Error.
#include "fuzz_import.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = mgca::fuzz::split_parts(data, size);
  const auto dir = mgca::fuzz::fresh_dir("openi");
  mgca::fuzz::write_text(dir / "ecgen-radiology" / "1.xml", parts[0]);
  if (parts.size() > 1) mgca::fuzz::write_text(dir / "file2label.json", parts[1]);
  if (parts.size() > 2) mgca::fuzz::write_text(dir / "r2gen_annotation.json", parts[2]);
  mgca::fuzz::import_and_prepare("openi", dir);
  return 0;
}
