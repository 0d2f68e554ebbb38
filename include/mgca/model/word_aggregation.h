// Subword → word aggregation of MGCA's text side (official BertEncoder.forward
// + aggregate_tokens; golden: shared/data/golden/text_agg_*.safetensors).
//
// For each sample, tokens are visited from [CLS]; a token whose id is a
// continuation ("##…") joins the current word, any other token closes the
// current word and starts a new one; [SEP] closes the current word, becomes a
// word of its own, and ends the sample. A word's feature is the sum of its
// tokens' hidden states, its weight the sum of its tokens' [CLS] attention.
// Words are written from slot 0 ([CLS]'s word) and zero-padded to L slots.
// WordAggregationOptions::official_pairing selects the reference's
// off-by-one pairing (docs/contract.md §2.2 quirk (b), see config.h).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "mgca/model/config.h"

namespace mgca::model {

// What the aggregation needs from the tokenizer:
// text::Tokenizer::continuation_table() and sep_id().
struct WordVocabulary {
  std::vector<uint8_t> continuation;  // id → 1 if the token starts with "##"
  int64_t sep_id = 102;
};

struct AggregatedWords {
  torch::Tensor report_feat;  // [b, D]: the [CLS] word (slot 0)
  torch::Tensor word_feat;    // [b, L-1, D]: words of slots 1..L-1, zero at pad words
  torch::Tensor word_weight;  // [b, L-1]: summed [CLS] attention (0 at pad words), no grad
  torch::Tensor word_mask;    // [b, L-1] bool: true at pad words
  torch::Tensor num_words;    // [b] int64: words including the [CLS] word and the [SEP] word
};

// hidden [b, L, D] (differentiable), input_ids [b, L] int64 (any device; read
// on the host), cls_attention [b, L]: attention from [CLS] to tokens 0..L-1
// (BERT's TextFeatures::cls_attention). Deterministic (a gather, no atomics),
// the gradient reaches `hidden`.
AggregatedWords aggregate_words(const torch::Tensor& hidden, const torch::Tensor& input_ids,
                                const torch::Tensor& cls_attention, const WordVocabulary& vocab,
                                const WordAggregationOptions& options = {});

}  // namespace mgca::model
