// The generated Unicode tables and their lookups against Python itself, for
// every code point, plus the context-dependent parts (final sigma, canonical
// reordering) on strings.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <unordered_map>

#include "support/test_support.h"
#include "text/unicode.h"

namespace mgca::text::unicode {
namespace {

namespace fs = std::filesystem;

fs::path generator() { return test::source_dir() / "scripts/gen_unicode_tables.py"; }

std::string hex_list(const std::u32string& s) {
  std::string out;
  for (const char32_t c : s) {
    if (!out.empty()) out += ",";
    out += fmt::format("{:X}", static_cast<uint32_t>(c));
  }
  return out;
}

TEST(Unicode, TablesAreCurrent) {
  // The committed tables are what the generator makes now.
  test::TempDir dir;
  const auto out = dir / "tables.inc";
  const auto result = test::run_command(mgca::test::python() + " " + generator().string() + " > " + out.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(test::read_text_file(out) == test::read_text_file(test::source_dir() / "src/text/unicode_tables.inc"))
      << "src/text/unicode_tables.inc is stale: regenerate it with scripts/gen_unicode_tables.py";
  EXPECT_STREQ(table_version(), "14.0.0");
}

TEST(Unicode, EveryCodePointMatchesPython) {
  // gen_unicode_tables.py --dump: "CP FLAGS CCC LOWER NFD" for each code point
  // with anything non-trivial, computed by Python at test time.
  test::TempDir dir;
  const auto out = dir / "dump.txt";
  const auto result = test::run_command(mgca::test::python() + " " + generator().string() + " --dump > " + out.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::unordered_map<uint32_t, std::string> python;
  std::ifstream in(out);
  std::string line;
  while (std::getline(in, line)) python.emplace(std::stoul(line.substr(0, line.find(' ')), nullptr, 16), line);
  ASSERT_GT(python.size(), 100000u);

  int mismatches = 0;
  for (uint32_t cp = 0; cp < 0x110000; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const char32_t c = cp;
    const std::u32string single(1, c);
    const std::u32string lower = to_lower(single);
    const std::u32string decomposed = nfd(single);
    const uint8_t f = flags(c), ccc = combining_class(c);
    std::string ours;
    if (f || ccc || lower != single || decomposed != single) {
      ours = fmt::format("{:X} {} {} {} {}", cp, f, ccc, lower != single ? hex_list(lower) : "-",
                         decomposed != single ? hex_list(decomposed) : "-");
    }
    const auto found = python.find(cp);
    const std::string theirs = found == python.end() ? "" : found->second;
    if (ours != theirs && ++mismatches <= 10) {
      ADD_FAILURE() << "U+" << fmt::format("{:04X}", cp) << ": ours '" << ours << "', Python '" << theirs << "'";
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Unicode, FinalSigmaAndSpecialLowercase) {
  // Expected values printed by Python 3.11's str.lower().
  EXPECT_EQ(to_lower(U"\u03a3\u0391\u03a3"), U"\u03c3\u03b1\u03c2");
  EXPECT_EQ(to_lower(U"\u03a3"), U"\u03c3");
  EXPECT_EQ(to_lower(U"A\u03a3'"), U"a\u03c2'");       // case-ignorable after
  EXPECT_EQ(to_lower(U"A\u03a3'B"), U"a\u03c3'b");     // cased letter after the ignorable
  EXPECT_EQ(to_lower(U"A.\u03a3"), U"a.\u03c2");       // ignorable before
  EXPECT_EQ(to_lower(U"\u0130X"), U"i\u0307x");        // İ: two code points
}

TEST(Unicode, NfdReordersCombiningMarks) {
  EXPECT_EQ(nfd(U"a\u0301\u0323"), U"a\u0323\u0301");
  EXPECT_EQ(nfd(U"\u1e69\u0307"), U"s\u0323\u0307\u0307");
  EXPECT_EQ(nfd(U"\uac01\u0301"), U"\u1100\u1161\u11a8\u0301");  // Hangul LVT + mark
  EXPECT_EQ(nfd(U"\u00c5\u0328"), U"A\u0328\u030a");
}

TEST(Unicode, Utf8RoundTripAndReplacement) {
  const std::string text = "a\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80";
  EXPECT_EQ(decode_utf8(text), U"a\u00e9\u2713\U0001F600");
  EXPECT_EQ(encode_utf8(decode_utf8(text)), text);
  EXPECT_TRUE(is_valid_utf8(text));
  // Stray continuation, truncated sequence, overlong form, encoded surrogate.
  EXPECT_EQ(decode_utf8("\x80x"), U"\ufffdx");
  EXPECT_EQ(decode_utf8("\xe2\x9c"), U"\ufffd");
  EXPECT_EQ(decode_utf8("\xc0\xaf"), U"\ufffd\ufffd");
  EXPECT_EQ(decode_utf8("\xed\xa0\x80"), U"\ufffd");
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
}

}  // namespace
}  // namespace mgca::text::unicode
