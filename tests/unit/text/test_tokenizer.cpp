// The BERT tokenizer against the golden vectors of Google's tokenization.py
// (every line of both files), plus encode(), the continuation table and the
// vocab errors.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "mgca/text/tokenizer.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::text {
namespace {

using test::error_of;

namespace fs = std::filesystem;

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "'" << (text) << "' lacks '" << (part) << "'"

fs::path vocab(bool cased) {
  return test::shared_data_dir() / "vocab" / (cased ? "bert-base-cased-vocab.txt" : "bert-base-uncased-vocab.txt");
}

const Tokenizer& cased() {
  static const Tokenizer t = Tokenizer::from_vocab_file(vocab(true), {false, 100});
  return t;
}
const Tokenizer& uncased() {
  static const Tokenizer t = Tokenizer::from_vocab_file(vocab(false), {true, 100});
  return t;
}

void check_golden(const Tokenizer& tokenizer, const std::string& file) {
  std::ifstream in(test::shared_data_dir() / "golden" / file);
  ASSERT_TRUE(in.good()) << file;
  std::string line;
  int number = 0, mismatches = 0;
  size_t pieces = 0;
  while (std::getline(in, line)) {
    ++number;
    const auto golden = nlohmann::json::parse(line);
    const std::string text = golden.at("text");
    const auto want_tokens = golden.at("tokens").get<std::vector<std::string>>();
    const auto want_ids = golden.at("ids").get<std::vector<int64_t>>();
    const auto tokens = tokenizer.tokenize(text);
    const auto ids = tokenizer.tokens_to_ids(tokens);
    pieces += tokens.size();
    if (tokens != want_tokens || ids != want_ids) {
      ++mismatches;
      ADD_FAILURE() << file << " line " << number << ": text " << golden.at("text").dump()
                    << "\n  want " << nlohmann::json(want_tokens).dump() << "\n  got  "
                    << nlohmann::json(tokens).dump();
    }
  }
  EXPECT_EQ(number, 450);
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(pieces, 27000u);  // 29,559 cased / 27,542 uncased pieces in the README
}

TEST(TokenizerGolden, CasedEveryLine) { check_golden(cased(), "tokenizer-cased.jsonl"); }
TEST(TokenizerGolden, UncasedEveryLine) { check_golden(uncased(), "tokenizer-uncased.jsonl"); }

TEST(Tokenizer, VocabAndSpecialIds) {
  EXPECT_EQ(cased().vocab_size(), 28996);
  EXPECT_EQ(uncased().vocab_size(), 30522);
  for (const Tokenizer* t : {&cased(), &uncased()}) {
    EXPECT_EQ(t->pad_id(), 0);
    EXPECT_EQ(t->unk_id(), 100);
    EXPECT_EQ(t->cls_id(), 101);
    EXPECT_EQ(t->sep_id(), 102);
    EXPECT_EQ(t->id_to_token(101), "[CLS]");
  }
  EXPECT_TRUE(cased().options().lower_case == false && uncased().options().lower_case);
}

TEST(Tokenizer, ContinuationTable) {
  const auto& t = cased();
  ASSERT_EQ(t.continuation_table().size(), static_cast<size_t>(t.vocab_size()));
  int64_t count = 0;
  for (int64_t id = 0; id < t.vocab_size(); ++id) {
    const bool starts = t.id_to_token(id).rfind("##", 0) == 0;
    EXPECT_EQ(t.is_continuation(id), starts) << id;
    EXPECT_EQ(t.continuation_table()[static_cast<size_t>(id)], starts ? 1 : 0);
    count += starts;
  }
  EXPECT_GT(count, 5000);  // the cased BERT vocab has ~5.8k "##" pieces
  // "mediastinum" → media ##st ##in ##um (golden line 1).
  const auto ids = t.tokens_to_ids(t.tokenize("mediastinum"));
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_FALSE(t.is_continuation(ids[0]));
  EXPECT_TRUE(t.is_continuation(ids[1]) && t.is_continuation(ids[2]) && t.is_continuation(ids[3]));
  EXPECT_FALSE(t.is_continuation(t.cls_id()));
  EXPECT_CONTAINS(error_of([&] { t.is_continuation(-1); }), "token id -1 outside the vocab (size 28996)");
  EXPECT_CONTAINS(error_of([&] { t.id_to_token(28996); }), "token id 28996 outside the vocab");
}

TEST(Tokenizer, EncodeAddsClsSepAndPads) {
  const auto& t = cased();
  const auto e = t.encode("No pneumothorax.", 10);
  const auto pieces = t.tokens_to_ids(t.tokenize("No pneumothorax."));  // No p ##ne ##um ##oth ##orax .
  ASSERT_EQ(pieces.size(), 7u);
  std::vector<int64_t> want{101};
  want.insert(want.end(), pieces.begin(), pieces.end());
  want.push_back(102);
  want.push_back(0);
  EXPECT_EQ(e.input_ids, want);
  EXPECT_EQ(e.attention_mask, (std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 0}));
  EXPECT_EQ(e.length, 9);

  const auto empty = t.encode("", 4);
  EXPECT_EQ(empty.input_ids, (std::vector<int64_t>{101, 102, 0, 0}));
  EXPECT_EQ(empty.attention_mask, (std::vector<int64_t>{1, 1, 0, 0}));
  EXPECT_EQ(empty.length, 2);
}

TEST(Tokenizer, EncodeTruncatesKeepingSepLast) {
  const auto& t = uncased();
  std::string text;
  for (int i = 0; i < 80; ++i) text += "no acute cardiopulmonary process . ";
  const auto all = t.tokens_to_ids(t.tokenize(text));
  ASSERT_GT(all.size(), 200u);
  const auto e = t.encode(text, 112);  // MGCA's max_length
  ASSERT_EQ(e.input_ids.size(), 112u);
  ASSERT_EQ(e.attention_mask.size(), 112u);
  EXPECT_EQ(e.length, 112);
  EXPECT_EQ(e.input_ids.front(), t.cls_id());
  EXPECT_EQ(e.input_ids.back(), t.sep_id());
  EXPECT_TRUE(std::equal(all.begin(), all.begin() + 110, e.input_ids.begin() + 1));
  EXPECT_EQ(std::count(e.attention_mask.begin(), e.attention_mask.end(), 1), 112);
  // Exactly max_length-2 pieces fit without truncation and without padding.
  const auto exact = t.encode("a b c", 5);
  EXPECT_EQ(exact.input_ids, (std::vector<int64_t>{101, t.tokens_to_ids({"a"})[0], t.tokens_to_ids({"b"})[0],
                                                   t.tokens_to_ids({"c"})[0], 102}));
  EXPECT_EQ(t.encode("a b c", 2).input_ids, (std::vector<int64_t>{101, 102}));
  EXPECT_CONTAINS(error_of([&] { t.encode("a", 1); }), "max_length 1 leaves no room");
}

TEST(Tokenizer, UnknownWordsAndTokens) {
  const auto& t = cased();
  EXPECT_EQ(t.tokens_to_ids({"[UNK]", "no-such-piece"}), (std::vector<int64_t>{100, 100}));
  EXPECT_EQ(t.tokenize(std::string(101, 'a')), std::vector<std::string>{"[UNK]"});
  EXPECT_NE(t.tokenize(std::string(100, 'a')), std::vector<std::string>{"[UNK]"});
  // Invalid UTF-8 reads as U+FFFD, which cleaning deletes (joining neighbours).
  EXPECT_EQ(t.tokenize("lung\xff" "s"), t.tokenize("lungs"));
  // A 100-character limit counts code points: 60 two-byte characters are 60.
  std::string accented;
  for (int i = 0; i < 60; ++i) accented += "\xc3\xa9";
  EXPECT_NE(t.tokenize(accented), std::vector<std::string>{"[UNK]"});
}

TEST(TokenizerVocab, Errors) {
  test::TempDir dir;
  EXPECT_CONTAINS(error_of([&] { Tokenizer::from_vocab_file(dir / "none.txt"); }),
                  "cannot read vocab file '" + (dir / "none.txt").string() + "'");
  test::write_text_file(dir / "small.txt", "[PAD]\n[UNK]\n[CLS]\nhello\n");
  EXPECT_CONTAINS(error_of([&] { Tokenizer::from_vocab_file(dir / "small.txt"); }),
                  "vocab " + (dir / "small.txt").string() + " (4 entries) has no [SEP] token");
  test::write_text_file(dir / "bad.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nb\xc3(d\n");
  EXPECT_CONTAINS(error_of([&] { Tokenizer::from_vocab_file(dir / "bad.txt"); }),
                  "vocab " + (dir / "bad.txt").string() + " line 5: invalid UTF-8");
  test::write_text_file(dir / "empty.txt", "");
  EXPECT_CONTAINS(error_of([&] { Tokenizer::from_vocab_file(dir / "empty.txt"); }), "is empty");
}

TEST(TokenizerVocab, LinesAreStrippedAndNumberedLikeLoadVocab) {
  // CRLF and lone CR end lines (universal newlines); surrounding whitespace
  // (including U+3000) is stripped; a repeated token keeps its last id.
  test::TempDir dir;
  test::write_text_file(dir / "v.txt",
                        "[PAD]\r\n[UNK]\r[CLS]\n  [SEP]\t\nlung\n\xe3\x80\x80##s\nlung\n\n##x");
  const auto t = Tokenizer::from_vocab_file(dir / "v.txt");
  EXPECT_EQ(t.vocab_size(), 9);
  EXPECT_EQ(t.sep_id(), 3);
  EXPECT_EQ(t.id_to_token(5), "##s");
  EXPECT_EQ(t.id_to_token(7), "");
  EXPECT_EQ(t.tokens_to_ids(t.tokenize("lungs lungx")), (std::vector<int64_t>{6, 5, 6, 8}));
  EXPECT_TRUE(t.is_continuation(8));
}

}  // namespace
}  // namespace mgca::text
