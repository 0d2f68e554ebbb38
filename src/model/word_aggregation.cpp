#include "mgca/model/word_aggregation.h"

#include <torch/torch.h>

#include <algorithm>

#include "format.h"
#include "mgca/util/error.h"

namespace mgca::model {

AggregatedWords aggregate_words(const torch::Tensor& hidden, const torch::Tensor& input_ids,
                                const torch::Tensor& cls_attention, const WordVocabulary& vocab,
                                const WordAggregationOptions& options) {
  MGCA_CHECK(hidden.dim() == 3, "aggregate_words: hidden must be [b, L, D], got {}", detail::dims(hidden.sizes()));
  const int64_t b = hidden.size(0), l = hidden.size(1), d = hidden.size(2);
  MGCA_CHECK(input_ids.sizes() == hidden.sizes().slice(0, 2),
             "aggregate_words: input_ids {} do not match hidden {}", detail::dims(input_ids.sizes()), detail::dims(hidden.sizes()));
  MGCA_CHECK(cls_attention.dim() == 2 && cls_attention.size(0) == b && cls_attention.size(1) == l,
             "aggregate_words: cls_attention must be [{}, {}] (attention to every token), got {}", b, l,
             detail::dims(cls_attention.sizes()));
  MGCA_CHECK(l >= 2, "aggregate_words: need at least 2 tokens, got {}", l);

  const auto ids = input_ids.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* id = ids.data_ptr<int64_t>();
  const int64_t vocab_size = static_cast<int64_t>(vocab.continuation.size());
  const int64_t zero_row = b * l;  // index of the appended zero row
  // words[i][j]: token positions of word j of sample i.
  std::vector<std::vector<std::vector<int64_t>>> words(b);
  std::vector<int64_t> num_words(b);
  int64_t max_len = 1;
  for (int64_t i = 0; i < b; ++i) {
    auto& out = words[i];
    std::vector<int64_t> bank;
    bool ended = false;
    // Official: tokens 0..L-2 (zip with the L-1 attention entries).
    const int64_t visit = options.official_pairing ? l - 1 : l;
    for (int64_t t = 0; t < visit; ++t) {
      const int64_t token = id[i * l + t];
      MGCA_CHECK(token >= 0 && token < vocab_size,
                 "aggregate_words: sample {} token {} has id {} outside the vocabulary of {}", i, t, token,
                 vocab_size);
      if (token == vocab.sep_id) {
        if (!bank.empty()) out.push_back(bank);
        out.push_back({t});
        ended = true;
        break;
      }
      const bool joins = vocab.continuation[token] != 0 && !bank.empty() &&
                         (options.official_pairing || t != 1);  // paper: [CLS] is always its own word
      if (joins) {
        bank.push_back(t);
      } else {
        if (!bank.empty()) out.push_back(bank);
        bank = {t};
      }
    }
    // Official: a word still open when the tokens run out is dropped.
    if (!ended && !options.official_pairing && !bank.empty()) out.push_back(bank);
    num_words[i] = static_cast<int64_t>(out.size());
    for (const auto& w : out) max_len = std::max<int64_t>(max_len, static_cast<int64_t>(w.size()));
  }

  // Pass m gathers the m-th token of every word: pass 0 for every slot (the
  // zero row for pad slots), later passes add into the slots of longer words.
  // Each pass adds at most one value per slot: deterministic on every device.
  const int64_t shift = options.official_pairing ? 1 : 0;  // attention index = token + shift
  std::vector<std::vector<int64_t>> slot(max_len), token(max_len), attn(max_len);
  slot[0].resize(b * l);
  token[0].assign(b * l, zero_row);
  attn[0].assign(b * l, zero_row);
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t j = 0; j < static_cast<int64_t>(words[i].size()); ++j) {
      const auto& w = words[i][j];
      for (size_t m = 0; m < w.size(); ++m) {
        const int64_t row = i * l + j;
        const int64_t source = i * l + w[m];
        if (m == 0) {
          token[0][row] = source;
          attn[0][row] = source + shift;
        } else {
          slot[m].push_back(row);
          token[m].push_back(source);
          attn[m].push_back(source + shift);
        }
      }
    }
  }
  const auto device = hidden.device();
  auto as_tensor = [&](const std::vector<int64_t>& v) {
    return torch::tensor(v, torch::kLong).to(device);
  };
  const auto h2 = at::cat({hidden.reshape({b * l, d}), hidden.new_zeros({1, d})});
  torch::Tensor attention;
  {
    torch::NoGradGuard no_grad;
    attention = at::cat({cls_attention.reshape({b * l}).to(hidden.scalar_type()), hidden.new_zeros({1})});
  }
  auto feat = h2.index_select(0, as_tensor(token[0]));
  torch::Tensor weight;
  {
    torch::NoGradGuard no_grad;
    weight = attention.index_select(0, as_tensor(attn[0]));
  }
  for (int64_t m = 1; m < max_len; ++m) {
    const auto rows = as_tensor(slot[m]);
    feat = feat.index_add(0, rows, h2.index_select(0, as_tensor(token[m])));
    torch::NoGradGuard no_grad;
    weight.index_add_(0, rows, attention.index_select(0, as_tensor(attn[m])));
  }
  feat = feat.view({b, l, d});
  weight = weight.view({b, l});

  AggregatedWords result;
  result.report_feat = feat.select(1, 0);
  result.word_feat = feat.narrow(1, 1, l - 1);
  result.word_weight = weight.narrow(1, 1, l - 1);
  result.num_words = torch::tensor(num_words, torch::kLong);
  const auto positions = torch::arange(1, l, torch::kLong).unsqueeze(0);  // word slot j+1
  result.word_mask = positions.ge(result.num_words.unsqueeze(1)).to(device);
  result.num_words = result.num_words.to(device);
  return result;
}

}  // namespace mgca::model
