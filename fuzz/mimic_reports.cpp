// A MIMIC-CXR-JPG folder as `mgca prep --format mimic-cxr` reads it
// (src/data/import_sources.cpp): part 0 is the sectioned reports
// mimic_cxr_sectioned.csv (MIMIC-CXR's create_section_files.py), part 1
// mimic-cxr-2.0.0-metadata.csv (a fixed table of three studies when
// absent), part 2 (optional) the chexpert table, part 3 (optional) the split
// table. Every item is listed, then its report sections read (prepare).
#include "fuzz_import.h"
#include "fuzz_support.h"

namespace {
constexpr const char* kDefaultMetadata =
    "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns\n"
    "d1,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544\n"
    "d2,10000032,53189527,CHEST (PORTABLE AP),AP,3056,2544\n"
    "d3,10000764,57375967,CHEST (PA AND LAT),PA,3056,2544\n";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = mgca::fuzz::split_parts(data, size);
  const auto dir = mgca::fuzz::fresh_dir("mimic");
  mgca::fuzz::write_text(dir / "mimic_cxr_sectioned.csv", parts[0]);
  mgca::fuzz::write_text(dir / "mimic-cxr-2.0.0-metadata.csv", parts.size() > 1 ? parts[1] : kDefaultMetadata);
  if (parts.size() > 2) mgca::fuzz::write_text(dir / "mimic-cxr-2.0.0-chexpert.csv", parts[2]);
  if (parts.size() > 3) mgca::fuzz::write_text(dir / "mimic-cxr-2.0.0-split.csv", parts[3]);
  mgca::fuzz::import_and_prepare("mimic-cxr", dir);
  return 0;
}
