// MGCA report cleaning: hand-written cases, and the official Python logic
// (tests/unit/text/report_reference.py) on every Open-I report and on edge
// cases, compared line for line.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "mgca/text/report.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::text {
namespace {

using Sentences = std::vector<std::string>;

TEST(CleanReport, HandWrittenCases) {
  auto r = clean_report("1. No pneumothorax. 2. Heart size normal.", "Clear lungs.");
  EXPECT_EQ(r.sentences, (Sentences{"no pneumothorax", "heart size normal", "clear lungs"}));
  EXPECT_EQ(r.num_tokens, 7);
  EXPECT_TRUE(r.kept);

  // "2.5" is split by the numbered-list pattern, as in the official code.
  r = clean_report("Nodule of 2.5 cm.", "");
  EXPECT_EQ(r.sentences, (Sentences{"nodule of", "5 cm"}));

  // One-word sentences are dropped; the report needs 3 tokens.
  r = clean_report("Normal.", "Clear lungs.");
  EXPECT_EQ(r.sentences, (Sentences{"clear lungs"}));
  EXPECT_EQ(r.num_tokens, 2);
  EXPECT_FALSE(r.kept);

  // Non-ASCII characters are dropped from tokens; an all-non-ASCII token
  // still counts towards the sentence's "more than one token" test.
  r = clean_report("Caf\xc3\xa9 \xce\xbb\xcf\x8c\xce\xb3\xce\xbf\xcf\x82", "");
  EXPECT_EQ(r.sentences, (Sentences{"caf"}));
  EXPECT_EQ(r.num_tokens, 1);

  // XXXX is kept (lower-cased); "\ufffd\ufffd" becomes a space; newlines too.
  r = clean_report("XXXX XXXX.\nno\xef\xbf\xbd\xef\xbf\xbd" "effusion seen", "");
  EXPECT_EQ(r.sentences, (Sentences{"xxxx xxxx", "no effusion seen"}));

  r = clean_report("", "");
  EXPECT_TRUE(r.sentences.empty());
  EXPECT_EQ(r.num_tokens, 0);
  EXPECT_FALSE(r.kept);
}

TEST(CleanReport, StoredFormRoundTrips) {
  const Sentences sentences{"no pneumothorax", "heart size normal"};
  EXPECT_EQ(join_sentences(sentences), "no pneumothorax\nheart size normal");
  EXPECT_EQ(split_sentences(join_sentences(sentences)), sentences);
  EXPECT_EQ(join_sentences({}), "");
  EXPECT_TRUE(split_sentences("").empty());
  EXPECT_EQ(split_sentences("one"), Sentences{"one"});
  const auto r = clean_report("1. No pneumothorax. 2. Heart size normal.", "");
  EXPECT_EQ(split_sentences(join_sentences(r.sentences)), r.sentences);
  // Sentences that would not survive the round trip are refused.
  EXPECT_THROW(join_sentences({"a\nb"}), Error);
  EXPECT_THROW(join_sentences({"a", ""}), Error);
}

TEST(CleanReport, MatchesOfficialPythonOnOpenIAndEdgeCases) {
  test::TempDir dir;
  const auto out = dir / "reference.jsonl";
  const auto script = test::source_dir() / "tests/unit/text/report_reference.py";
  const auto tgz = test::shared_data_dir() / "openi" / "NLMCXR_reports.tgz";
  const auto result =
      test::run_command(mgca::test::python() + " " + script.string() + " " + tgz.string() + " " + out.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;

  std::ifstream in(out);
  std::string line;
  int cases = 0, kept = 0, mismatches = 0;
  while (std::getline(in, line)) {
    const auto ref = nlohmann::json::parse(line);
    ++cases;
    const auto got = clean_report(ref.at("impression"), ref.at("findings"));
    const auto want = ref.at("sentences").get<Sentences>();
    const bool same = got.sentences == want && got.num_tokens == ref.at("cnt").get<int64_t>() &&
                      got.kept == ref.at("kept").get<bool>();
    kept += got.kept;
    if (!same && ++mismatches <= 10) {
      ADD_FAILURE() << ref.at("id").get<std::string>() << ": impression " << ref.at("impression").dump()
                    << " findings " << ref.at("findings").dump() << "\n  want " << ref.at("sentences").dump()
                    << " cnt " << ref.at("cnt") << "\n  got  " << nlohmann::json(got.sentences).dump() << " cnt "
                    << got.num_tokens;
    }
  }
  EXPECT_EQ(cases, 3955 + 16);  // every Open-I report and the edge cases
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(kept, 3900);
}

}  // namespace
}  // namespace mgca::text
