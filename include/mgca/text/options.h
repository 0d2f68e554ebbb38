// The [text] table of a job: the vocabulary and how reports are tokenized
// (no torch). visit_text_options() binds each job-file key to its field with
// its meaning and allowed range.
#pragma once

#include <cstdint>
#include <string>

#include "mgca/util/option_types.h"

namespace mgca::text {

struct TextOptions {
  std::string vocab = "../shared/data/vocab/bert-base-cased-vocab.txt";  // WordPiece vocab.txt
  bool lower_case = false;   // Bio_ClinicalBERT is cased
  int64_t max_length = 112;  // tokens per report, [CLS] and [SEP] included
};

// f(key, field&, meaning, util::Range) for every key of [text], in the resolved TOML's order.
template <typename Options, typename F>
void visit_text_options(Options& t, F&& f) {
  using util::Range;
  f("text.vocab", t.vocab, "WordPiece vocabulary (vocab.txt)", Range{});
  f("text.lower_case", t.lower_case, "lower-case and strip accents before WordPiece", Range{});
  f("text.max_length", t.max_length, "tokens per report, [CLS] and [SEP] included", Range::at_least(3));
}

}  // namespace mgca::text
