// A CSV table (src/data/csv.h): every record of the file.
#include "data/csv.h"
#include "fuzz_support.h"
#include "mgca/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = mgca::fuzz::write_input("table.csv", data, size);
  try {
    mgca::data::CsvReader csv(path);
    std::vector<std::string> row;
    while (csv.next(row)) (void)csv.malformed();
  } catch (const mgca::Error&) {
  }
  return 0;
}
