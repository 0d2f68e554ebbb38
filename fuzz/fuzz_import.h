// The importer targets' common run (openi_xml, mimic_reports): the folder
// `in` read as `mgca prep --format <format>` reads it, up to its reports —
// every item listed, then prepare() over all of them. A bad input must end
// in a counted skip or an mgca::Error, nothing else.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "mgca/data/import.h"
#include "mgca/util/error.h"

namespace mgca::fuzz {

inline void import_and_prepare(const std::string& format, const std::filesystem::path& in) {
  data::ImportOptions options;
  options.format = format;
  options.in = in;
  try {
    auto source = data::make_import_source(options);
    source->prepare(0, static_cast<int64_t>(source->items().size()));
  } catch (const Error&) {
  }
}

}  // namespace mgca::fuzz
