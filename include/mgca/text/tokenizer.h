// BERT tokenizer: BasicTokenizer (cleaning, CJK spacing, whitespace and
// punctuation split, optional lower-casing + accent stripping) followed by
// greedy longest-match-first WordPiece, exactly as Google's tokenization.py
// (golden vectors: shared/data/golden/tokenizer-*.jsonl).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mgca::text {

struct TokenizerOptions {
  bool lower_case = false;              // Bio_ClinicalBERT is cased
  int max_input_chars_per_word = 100;   // Hugging Face's value, used by MGCA
};

// input_ids and attention_mask have exactly max_length entries:
// [CLS] t1 … tn [SEP] [PAD]…; when the text is too long the word pieces are
// truncated so that [SEP] is still the last real token.
struct Encoding {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> attention_mask;  // 1 for real tokens ([CLS] and [SEP] included), 0 for pads
  int64_t length = 0;                   // number of real tokens
};

class Tokenizer {
 public:
  // Reads a vocab file (one token per line, id = 0-based line number).
  // Errors name the file; a vocab without [CLS]/[SEP]/[PAD]/[UNK] is an error.
  static Tokenizer from_vocab_file(const std::filesystem::path& vocab_file,
                                   TokenizerOptions options = {});

  // Word pieces of `text` (UTF-8), without [CLS]/[SEP]: FullTokenizer.tokenize.
  // Invalid UTF-8 reads as U+FFFD, which the cleaning step deletes.
  std::vector<std::string> tokenize(std::string_view text) const;
  // A token that is not in the vocab maps to unk_id() (as Hugging Face does).
  std::vector<int64_t> tokens_to_ids(const std::vector<std::string>& tokens) const;
  const std::string& id_to_token(int64_t id) const;  // error outside [0, vocab_size)

  // max_length >= 2. Thread-safe (const), like every method here.
  Encoding encode(std::string_view text, int64_t max_length) const;

  // True for ids whose token starts with "##" (a word continuation): the
  // subword → word aggregation of CTA uses this table.
  bool is_continuation(int64_t id) const;
  const std::vector<uint8_t>& continuation_table() const { return continuation_; }

  int64_t vocab_size() const { return static_cast<int64_t>(id_to_token_.size()); }
  int64_t pad_id() const { return pad_id_; }
  int64_t cls_id() const { return cls_id_; }
  int64_t sep_id() const { return sep_id_; }
  int64_t unk_id() const { return unk_id_; }
  const TokenizerOptions& options() const { return options_; }

 private:
  TokenizerOptions options_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int64_t> token_to_id_;
  std::vector<uint8_t> continuation_;
  int64_t pad_id_ = 0, cls_id_ = 0, sep_id_ = 0, unk_id_ = 0;
};

}  // namespace mgca::text
