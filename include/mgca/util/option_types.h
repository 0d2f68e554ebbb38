// The vocabulary of every module's typed options (no torch): one name table
// per enum, and the allowed range of a number.
//
// A module declares, beside each enum of its options,
//   inline constexpr util::NamedValue<Kind> kKindNames[] = {{Kind::A, "a"}, ...};
//   constexpr const auto& enum_names(Kind) { return kKindNames; }
// and the job-file parser, to_toml, the key table's choices and the error
// messages all read that one table (enum_names is found by argument-dependent
// lookup). Past the parser a setting is the enum, never its name.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mgca/util/error.h"

namespace mgca::util {

template <typename E>
struct NamedValue {
  E value;
  const char* name;
};

// True for an enum that has a name table.
template <typename T, typename = void>
struct has_enum_names : std::false_type {};
template <typename T>
struct has_enum_names<T, std::void_t<decltype(enum_names(std::declval<T>()))>> : std::is_enum<T> {};
template <typename T>
inline constexpr bool has_enum_names_v = has_enum_names<T>::value;

// The name of `value` in its table.
template <typename E>
const char* enum_name(E value) {
  for (const auto& entry : enum_names(value)) {
    if (entry.value == value) return entry.name;
  }
  MGCA_FAIL("enum value {} has no name in its table", static_cast<long long>(value));
}

// The value named `name`, if the table has it (exact, case-sensitive).
template <typename E>
std::optional<E> enum_from_name(std::string_view name) {
  for (const auto& entry : enum_names(E{})) {
    if (name == entry.name) return entry.value;
  }
  return std::nullopt;
}

// The names in table order (a command line's allowed values).
template <typename E>
std::vector<std::string> enum_name_list() {
  std::vector<std::string> names;
  for (const auto& entry : enum_names(E{})) names.emplace_back(entry.name);
  return names;
}

// "a, b, c": the names in table order.
template <typename E>
std::string enum_choices() {
  std::string text;
  for (const auto& entry : enum_names(E{})) text += (text.empty() ? "" : ", ") + std::string(entry.name);
  return text;
}

// The value named `name`; an error naming `setting` (a key or a flag), the
// name and the valid names otherwise.
template <typename E>
E parse_enum(std::string_view name, std::string_view setting) {
  if (auto value = enum_from_name<E>(name)) return *value;
  MGCA_FAIL("{}: unknown value '{}'; valid: {}", setting, name, enum_choices<E>());
}

// The allowed values of a number option: a lower and an upper bound, each
// closed or open or absent; `finite` also rejects ±inf. NaN fails every
// bound. Range{} allows everything.
struct Range {
  std::optional<double> low, high;
  bool low_open = false, high_open = false;
  bool finite = false;

  static Range at_least(double low) { return Range{low, std::nullopt, false, false, false}; }
  static Range above(double low) { return Range{low, std::nullopt, true, false, false}; }
  static Range closed(double low, double high) { return Range{low, high, false, false, false}; }
  static Range half_open(double low, double high) { return Range{low, high, false, true, false}; }  // [low, high)
  Range and_finite() const {
    Range r = *this;
    r.finite = true;
    return r;
  }
  bool any() const { return !low && !high && !finite; }

  // ">= 1", "> 0", "in [0, 1)", with ", finite" when `finite` ("" for Range{}).
  std::string text() const {
    std::string bounds;
    if (low && high) {
      bounds = fmt::format("in {}{}, {}{}", low_open ? '(' : '[', *low, *high, high_open ? ')' : ']');
    } else if (low) {
      bounds = fmt::format("{} {}", low_open ? ">" : ">=", *low);
    } else if (high) {
      bounds = fmt::format("{} {}", high_open ? "<" : "<=", *high);
    }
    if (!finite) return bounds;
    return bounds.empty() ? "finite" : bounds + ", finite";
  }

  // "" when `value` is allowed, else "<value> must be >= 1" (or "> 0",
  // "in [0, 1)", ...; the bounds alone when it is ±inf outside Range{}.and_finite()).
  template <typename T>
  std::string problem(T value) const {
    const auto v = static_cast<double>(value);
    bool ok = !finite || std::isfinite(v);
    if (low) ok = ok && (low_open ? v > *low : v >= *low);
    if (high) ok = ok && (high_open ? v < *high : v <= *high);
    if (ok) return "";
    Range bounds = *this;
    bounds.finite = low || high ? false : finite;
    return fmt::format("{} must be {}", value, bounds.text());
  }
};

}  // namespace mgca::util
