// Our tokenizer against Hugging Face's on every Open-I report
// (tokenizer_reference.py): transformers' pure-Python BertTokenizerLegacy and
// its tokenizers-backed BertTokenizer, cased and uncased vocabularies, raw
// report text and MGCA's cleaned text. Word pieces, and MGCA's encode call
// (max_length 112): input ids and attention mask identical on every text.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "mgca/text/tokenizer.h"
#include "support/test_support.h"

namespace mgca::text {
namespace {

constexpr int64_t kMgcaMaxLength = 112;

void expect_same_as_hugging_face(bool cased) {
  const auto vocab =
      test::shared_data_dir() / "vocab" / (cased ? "bert-base-cased-vocab.txt" : "bert-base-uncased-vocab.txt");
  const auto tokenizer = Tokenizer::from_vocab_file(vocab, {/*lower_case=*/!cased, 100});
  test::TempDir dir;
  const auto out = dir / "reference.jsonl";
  const auto script = test::source_dir() / "tests/unit/text/tokenizer_reference.py";
  const auto tgz = test::shared_data_dir() / "openi" / "NLMCXR_reports.tgz";
  const auto result = test::run_command(mgca::test::python() + " " + script.string() + " " + tgz.string() + " " +
                                        vocab.string() + (cased ? " cased " : " uncased ") +
                                        std::to_string(kMgcaMaxLength) + " " + out.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;

  std::ifstream in(out);
  std::string line;
  int texts = 0, truncated = 0, mismatches = 0;
  while (std::getline(in, line)) {
    const auto ref = nlohmann::json::parse(line);
    ++texts;
    const std::string text = ref.at("text");
    const auto pieces = tokenizer.tokens_to_ids(tokenizer.tokenize(text));
    const auto encoding = tokenizer.encode(text, kMgcaMaxLength);
    truncated += pieces.size() + 2 > static_cast<size_t>(kMgcaMaxLength);
    for (const char* implementation : {"slow", "fast"}) {
      const auto& want = ref.at(implementation);
      const bool same = pieces == want.at("pieces").get<std::vector<int64_t>>() &&
                        encoding.input_ids == want.at("input_ids").get<std::vector<int64_t>>() &&
                        encoding.attention_mask == want.at("attention_mask").get<std::vector<int64_t>>();
      if (!same && ++mismatches <= 10) {
        ADD_FAILURE() << ref.at("id").get<std::string>() << " (" << ref.at("kind").get<std::string>() << ", "
                      << implementation << "): text " << ref.at("text").dump() << "\n  want "
                      << want.at("input_ids").dump() << "\n  got  " << nlohmann::json(encoding.input_ids).dump();
      }
    }
  }
  EXPECT_EQ(texts, 2 * 3955);  // raw and cleaned text of every Open-I report
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(truncated, 100);  // the truncation path is exercised on real reports
}

TEST(TokenizerHuggingFace, CasedVocabOnEveryOpenIReport) { expect_same_as_hugging_face(true); }
TEST(TokenizerHuggingFace, UncasedVocabOnEveryOpenIReport) { expect_same_as_hugging_face(false); }

}  // namespace
}  // namespace mgca::text
