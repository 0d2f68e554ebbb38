// Google's tokenization.py (BasicTokenizer + WordpieceTokenizer) step by
// step; the comments name the Python function each part reproduces.
#include "mgca/text/tokenizer.h"


#include "mgca/util/error.h"
#include "mgca/util/files.h"
#include "unicode.h"

namespace mgca::text {
namespace {

namespace u = unicode;

// _is_control / _is_whitespace / _is_punctuation.
bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  return u::has(c, u::kControl);
}
bool is_whitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || u::has(c, u::kSpaceSep);
}
bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) {
    return true;
  }
  return u::has(c, u::kPunct);
}

// Python str.split() with no separator: runs of non-isspace characters.
void split_on_space(const std::u32string& text, std::vector<std::u32string>& out) {
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && u::has(text[i], u::kSpace)) ++i;
    size_t j = i;
    while (j < text.size() && !u::has(text[j], u::kSpace)) ++j;
    if (j > i) out.emplace_back(text.substr(i, j - i));
    i = j;
  }
}

}  // namespace

Tokenizer Tokenizer::from_vocab_file(const std::filesystem::path& vocab_file, TokenizerOptions options) {
  const std::string bytes = util::read_file(vocab_file, "vocab file");
  MGCA_CHECK(options.max_input_chars_per_word > 0, "vocab {}: max_input_chars_per_word must be positive, got {}",
             vocab_file.string(), options.max_input_chars_per_word);

  Tokenizer tokenizer;
  tokenizer.options_ = options;
  // load_vocab: lines in universal-newline mode, each stripped (str.strip());
  // the id is the line number; a repeated token keeps its last id.
  size_t begin = 0;
  int64_t line = 0;
  while (begin < bytes.size()) {
    size_t end = bytes.find_first_of("\r\n", begin);
    if (end == std::string::npos) end = bytes.size();
    const std::string_view raw(bytes.data() + begin, end - begin);
    MGCA_CHECK(u::is_valid_utf8(raw), "vocab {} line {}: invalid UTF-8", vocab_file.string(), line + 1);
    const std::u32string decoded = u::decode_utf8(raw);
    size_t first = 0, last = decoded.size();
    while (first < last && u::has(decoded[first], u::kSpace)) ++first;
    while (last > first && u::has(decoded[last - 1], u::kSpace)) --last;
    std::string token = u::encode_utf8(std::u32string_view(decoded).substr(first, last - first));
    tokenizer.token_to_id_.insert_or_assign(token, line);
    tokenizer.id_to_token_.push_back(std::move(token));
    ++line;
    begin = end + 1;
    if (end < bytes.size() && bytes[end] == '\r' && begin < bytes.size() && bytes[begin] == '\n') ++begin;
  }
  MGCA_CHECK(!tokenizer.id_to_token_.empty(), "vocab file {} is empty", vocab_file.string());

  const auto special = [&](const char* name) {
    const auto found = tokenizer.token_to_id_.find(name);
    MGCA_CHECK(found != tokenizer.token_to_id_.end(), "vocab {} ({} entries) has no {} token",
               vocab_file.string(), tokenizer.id_to_token_.size(), name);
    return found->second;
  };
  tokenizer.pad_id_ = special("[PAD]");
  tokenizer.unk_id_ = special("[UNK]");
  tokenizer.cls_id_ = special("[CLS]");
  tokenizer.sep_id_ = special("[SEP]");
  tokenizer.continuation_.resize(tokenizer.id_to_token_.size());
  for (size_t id = 0; id < tokenizer.id_to_token_.size(); ++id) {
    tokenizer.continuation_[id] = tokenizer.id_to_token_[id].rfind("##", 0) == 0 ? 1 : 0;
  }
  return tokenizer;
}

std::vector<std::string> Tokenizer::tokenize(std::string_view text) const {
  const std::u32string input = u::decode_utf8(text);

  // _clean_text, then _tokenize_chinese_chars.
  std::u32string cleaned;
  cleaned.reserve(input.size());
  for (const char32_t c : input) {
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    if (is_whitespace(c)) {
      cleaned.push_back(U' ');
    } else if (u::is_cjk(c)) {
      cleaned.push_back(U' ');
      cleaned.push_back(c);
      cleaned.push_back(U' ');
    } else {
      cleaned.push_back(c);
    }
  }

  // whitespace_tokenize; per token: lower + _run_strip_accents (uncased),
  // _run_split_on_punc; then whitespace_tokenize(" ".join(...)).
  std::vector<std::u32string> words;
  split_on_space(cleaned, words);
  std::vector<std::u32string> basic_tokens;
  for (std::u32string& word : words) {
    if (options_.lower_case) {
      const std::u32string decomposed = u::nfd(u::to_lower(word));
      word.clear();
      for (const char32_t c : decomposed) {
        if (!u::has(c, u::kNonspacing)) word.push_back(c);
      }
    }
    std::u32string current;
    const auto flush = [&] {
      if (!current.empty()) split_on_space(current, basic_tokens);
      current.clear();
    };
    for (const char32_t c : word) {
      if (is_punctuation(c)) {
        flush();
        basic_tokens.emplace_back(1, c);
      } else {
        current.push_back(c);
      }
    }
    flush();
  }

  // WordpieceTokenizer.tokenize: greedy longest match, lengths in code points.
  std::vector<std::string> pieces;
  const std::string& unk = id_to_token_[static_cast<size_t>(unk_id_)];
  for (const std::u32string& token : basic_tokens) {
    if (static_cast<int64_t>(token.size()) > options_.max_input_chars_per_word) {
      pieces.push_back(unk);
      continue;
    }
    const size_t first_piece = pieces.size();
    size_t start = 0;
    bool bad = false;
    while (start < token.size()) {
      size_t end = token.size();
      std::string match;
      while (start < end) {
        std::string candidate = start > 0 ? "##" : "";
        candidate += u::encode_utf8(std::u32string_view(token).substr(start, end - start));
        if (token_to_id_.count(candidate) != 0) {
          match = std::move(candidate);
          break;
        }
        --end;
      }
      if (match.empty()) {
        bad = true;
        break;
      }
      pieces.push_back(std::move(match));
      start = end;
    }
    if (bad) {
      pieces.resize(first_piece);
      pieces.push_back(unk);
    }
  }
  return pieces;
}

std::vector<int64_t> Tokenizer::tokens_to_ids(const std::vector<std::string>& tokens) const {
  std::vector<int64_t> ids;
  ids.reserve(tokens.size());
  for (const auto& token : tokens) {
    const auto found = token_to_id_.find(token);
    ids.push_back(found == token_to_id_.end() ? unk_id_ : found->second);
  }
  return ids;
}

const std::string& Tokenizer::id_to_token(int64_t id) const {
  MGCA_CHECK(id >= 0 && id < vocab_size(), "token id {} outside the vocab (size {})", id, vocab_size());
  return id_to_token_[static_cast<size_t>(id)];
}

Encoding Tokenizer::encode(std::string_view text, int64_t max_length) const {
  MGCA_CHECK(max_length >= 2, "encode: max_length {} leaves no room for [CLS] and [SEP]", max_length);
  const std::vector<int64_t> ids = tokens_to_ids(tokenize(text));
  // Hugging Face truncation=True, padding="max_length": [CLS] + the first
  // max_length-2 pieces + [SEP], then [PAD]s.
  const size_t kept = std::min(ids.size(), static_cast<size_t>(max_length - 2));
  Encoding encoding;
  encoding.input_ids.reserve(static_cast<size_t>(max_length));
  encoding.input_ids.push_back(cls_id_);
  encoding.input_ids.insert(encoding.input_ids.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(kept));
  encoding.input_ids.push_back(sep_id_);
  encoding.length = static_cast<int64_t>(encoding.input_ids.size());
  encoding.attention_mask.assign(encoding.input_ids.size(), 1);
  encoding.input_ids.resize(static_cast<size_t>(max_length), pad_id_);
  encoding.attention_mask.resize(static_cast<size_t>(max_length), 0);
  return encoding;
}

bool Tokenizer::is_continuation(int64_t id) const {
  MGCA_CHECK(id >= 0 && id < vocab_size(), "token id {} outside the vocab (size {})", id, vocab_size());
  return continuation_[static_cast<size_t>(id)] != 0;
}

}  // namespace mgca::text
