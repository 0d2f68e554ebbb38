#include "unicode.h"

#include <algorithm>
#include <iterator>

namespace mgca::text::unicode {
namespace {

struct PropertyRange {
  char32_t first, last;
  uint8_t value;
};
struct Mapping2 {
  char32_t from;
  char32_t to[2];  // 0-terminated when shorter
};
struct Mapping4 {
  char32_t from;
  char32_t to[4];
};

#include "unicode_tables.inc"

uint8_t lookup(const PropertyRange* begin, const PropertyRange* end, char32_t cp) {
  // First range whose last >= cp.
  const auto* it = std::lower_bound(begin, end, cp, [](const PropertyRange& r, char32_t c) { return r.last < c; });
  return (it != end && it->first <= cp) ? it->value : 0;
}

template <typename M, size_t N>
const M* find_mapping(const M (&table)[N], char32_t cp) {
  const M* it = std::lower_bound(std::begin(table), std::end(table), cp,
                                 [](const M& m, char32_t c) { return m.from < c; });
  return (it != std::end(table) && it->from == cp) ? it : nullptr;
}

constexpr char32_t kReplacement = 0xFFFD;
constexpr char32_t kCapitalSigma = 0x3A3, kSmallSigma = 0x3C3, kFinalSigma = 0x3C2;

// Hangul syllable decomposition (Unicode §3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

}  // namespace

const char* table_version() { return kUnicodeVersion; }

uint8_t flags(char32_t cp) {
  if (cp < 0x80) {
    // Hot path for ASCII, from the same table (built once).
    static const auto ascii = [] {
      struct Table { uint8_t v[0x80]; } t{};
      for (char32_t c = 0; c < 0x80; ++c) {
        t.v[c] = lookup(std::begin(kPropertyRanges), std::end(kPropertyRanges), c);
      }
      return t;
    }();
    return ascii.v[cp];
  }
  return lookup(std::begin(kPropertyRanges), std::end(kPropertyRanges), cp);
}

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;  // nothing below U+0300 combines
  return lookup(std::begin(kCombiningClassRanges), std::end(kCombiningClassRanges), cp);
}

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = s[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    size_t length = 0;
    char32_t cp = 0, min = 0;
    if (b >= 0xC2 && b <= 0xDF) {
      length = 2, cp = b & 0x1F, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
      length = 3, cp = b & 0x0F, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
      length = 4, cp = b & 0x07, min = 0x10000;
    } else {
      out.push_back(kReplacement);  // stray continuation byte or invalid lead
      ++i;
      continue;
    }
    size_t k = 1;
    for (; k < length && i + k < n && (s[i + k] & 0xC0) == 0x80; ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
    if (k < length || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      out.push_back(kReplacement);
      i += k;  // skip the lead and the continuation bytes that belonged to it
      continue;
    }
    out.push_back(cp);
    i += length;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char32_t cp : text) append_utf8(out, cp);
  return out;
}

bool is_valid_utf8(std::string_view text) { return encode_utf8(decode_utf8(text)) == text; }

std::u32string to_lower(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t cp = text[i];
    if (cp < 0x80) {
      out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
      continue;
    }
    if (cp == kCapitalSigma) {
      // CPython's handle_capital_sigma: final when a cased letter precedes
      // (skipping case-ignorables) and none follows (skipping them again).
      size_t j = i;
      while (j > 0 && has(text[j - 1], kCaseIgnorable)) --j;
      bool final_sigma = j > 0 && has(text[j - 1], kCased);
      if (final_sigma) {
        size_t k = i + 1;
        while (k < text.size() && has(text[k], kCaseIgnorable)) ++k;
        final_sigma = k == text.size() || !has(text[k], kCased);
      }
      out.push_back(final_sigma ? kFinalSigma : kSmallSigma);
      continue;
    }
    if (const auto* m = find_mapping(kLowercase, cp)) {
      out.push_back(m->to[0]);
      if (m->to[1] != 0) out.push_back(m->to[1]);
    } else {
      out.push_back(cp);
    }
  }
  return out;
}

std::u32string nfd(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (const char32_t cp : text) {
    if (cp < 0xC0) {
      out.push_back(cp);  // nothing below U+00C0 decomposes
    } else if (cp >= kSBase && cp < kSBase + kSCount) {
      const char32_t s = cp - kSBase;
      out.push_back(kLBase + s / kNCount);
      out.push_back(kVBase + (s % kNCount) / kTCount);
      if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    } else if (const auto* m = find_mapping(kDecomposition, cp)) {
      for (const char32_t c : m->to) {
        if (c == 0) break;
        out.push_back(c);
      }
    } else {
      out.push_back(cp);
    }
  }
  // Canonical ordering: stable sort of each run of non-starters by class.
  size_t i = 0;
  while (i < out.size()) {
    if (combining_class(out[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < out.size() && combining_class(out[j]) != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(out.begin() + static_cast<std::ptrdiff_t>(i), out.begin() + static_cast<std::ptrdiff_t>(j),
                       [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    }
    i = j;
  }
  return out;
}

bool is_cjk(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

}  // namespace mgca::text::unicode
