// MGCA's MultimodalPretrainingDataset.create_path_2_sent_mapping, per report:
//
//   captions = impression + " " + findings
//   captions = captions.replace("\n", " ")
//   captions = re.compile("[0-9]+\.").split(captions)
//   captions = [sent for point in captions for sent in point.split(".")]
//   for cap in captions:
//       if len(cap) == 0: continue
//       cap = cap.replace("\ufffd\ufffd", " ")
//       tokens = RegexpTokenizer(r"\w+").tokenize(cap.lower())
//       if len(tokens) <= 1: continue
//       included = [t.encode("ascii", "ignore").decode("ascii") for t in tokens]
//       included = [t for t in included if len(t) > 0]
//       if len(included) > 0: study_sent.append(" ".join(included))
//       cnt += len(included)
//   keep the report iff cnt >= 3
//
// Python semantics reproduced: code-point strings (UTF-8 in, invalid bytes
// read as U+FFFD), str.lower() with final sigma, re's Unicode \w.
#include "mgca/text/report.h"

#include "mgca/util/error.h"
#include "unicode.h"

namespace mgca::text {
namespace {

namespace u = unicode;

// re.split("[0-9]+\.", s): pieces between matches (ASCII digits only).
std::vector<std::u32string> split_numbered(const std::u32string& s) {
  std::vector<std::u32string> pieces;
  size_t piece_begin = 0, i = 0;
  while (i < s.size()) {
    if (s[i] >= '0' && s[i] <= '9') {
      size_t j = i;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
      if (j < s.size() && s[j] == '.') {  // a match [i, j]
        pieces.push_back(s.substr(piece_begin, i - piece_begin));
        piece_begin = i = j + 1;
        continue;
      }
      i = j;  // no match can start inside this run of digits
      continue;
    }
    ++i;
  }
  pieces.push_back(s.substr(piece_begin));
  return pieces;
}

// str.split("."): keeps empty pieces.
void split_on_dot(const std::u32string& s, std::vector<std::u32string>& out) {
  size_t begin = 0;
  while (true) {
    const size_t dot = s.find(U'.', begin);
    out.push_back(s.substr(begin, dot == std::u32string::npos ? std::u32string::npos : dot - begin));
    if (dot == std::u32string::npos) return;
    begin = dot + 1;
  }
}

}  // namespace

CleanedReport clean_report(const std::string& impression, const std::string& findings) {
  std::u32string captions = u::decode_utf8(impression + " " + findings);
  for (char32_t& c : captions) {
    if (c == U'\n') c = U' ';
  }
  std::vector<std::u32string> sentences;
  for (const auto& point : split_numbered(captions)) split_on_dot(point, sentences);

  CleanedReport report;
  for (std::u32string& cap : sentences) {
    if (cap.empty()) continue;
    // cap.replace("\ufffd\ufffd", " "), left to right, non-overlapping.
    std::u32string replaced;
    for (size_t i = 0; i < cap.size(); ++i) {
      if (cap[i] == 0xFFFD && i + 1 < cap.size() && cap[i + 1] == 0xFFFD) {
        replaced.push_back(U' ');
        ++i;
      } else {
        replaced.push_back(cap[i]);
      }
    }
    const std::u32string lowered = u::to_lower(replaced);
    // re.findall(r"\w+"), then each token's ASCII characters.
    int64_t num_tokens = 0;
    std::vector<std::string> included;
    size_t i = 0;
    while (i < lowered.size()) {
      if (!u::has(lowered[i], u::kWord)) {
        ++i;
        continue;
      }
      std::string ascii;
      for (; i < lowered.size() && u::has(lowered[i], u::kWord); ++i) {
        if (lowered[i] < 0x80) ascii.push_back(static_cast<char>(lowered[i]));
      }
      ++num_tokens;
      if (!ascii.empty()) included.push_back(std::move(ascii));
    }
    if (num_tokens <= 1) continue;
    if (!included.empty()) {
      std::string sentence;
      for (const auto& token : included) {
        if (!sentence.empty()) sentence.push_back(' ');
        sentence += token;
      }
      report.sentences.push_back(std::move(sentence));
    }
    report.num_tokens += static_cast<int64_t>(included.size());
  }
  report.kept = report.num_tokens >= 3;
  return report;
}

std::string join_sentences(const std::vector<std::string>& sentences) {
  std::string joined;
  for (size_t i = 0; i < sentences.size(); ++i) {
    // Either would not survive split_sentences.
    MGCA_CHECK(!sentences[i].empty(), "join_sentences: sentence {} of {} is empty", i, sentences.size());
    MGCA_CHECK(sentences[i].find('\n') == std::string::npos,
               "join_sentences: sentence {} of {} contains a newline: '{}'", i, sentences.size(), sentences[i]);
    if (i > 0) joined.push_back('\n');
    joined += sentences[i];
  }
  return joined;
}

std::vector<std::string> split_sentences(const std::string& stored_report) {
  std::vector<std::string> sentences;
  if (stored_report.empty()) return sentences;
  size_t begin = 0;
  while (true) {
    const size_t end = stored_report.find('\n', begin);
    sentences.push_back(stored_report.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
    if (end == std::string::npos) return sentences;
    begin = end + 1;
  }
}

}  // namespace mgca::text
