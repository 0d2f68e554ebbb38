// Formatting helpers for error messages (private to the model module).
#pragma once

#include <c10/util/ArrayRef.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>

namespace mgca::model::detail {

// "[4, 8]"
inline std::string dims(c10::IntArrayRef sizes) { return fmt::format("[{}]", fmt::join(sizes, ", ")); }

}  // namespace mgca::model::detail
