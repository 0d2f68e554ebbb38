// Subword → word aggregation against the official implementation's golden
// vectors (shared/data/golden/text_agg_{float32,float64}.safetensors), and
// the `paper` variant against spans written out by hand.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "mgca/io/safetensors.h"
#include "mgca/model/word_aggregation.h"
#include "model_test_util.h"

namespace mgca::model {
namespace {

struct Golden {
  std::map<std::string, torch::Tensor> t;
  WordVocabulary vocab;
  torch::Tensor cls_attention;  // [B, L]: last layer, query [CLS], mean over heads
};

Golden load_golden(const std::string& dtype) {
  const auto path = test::shared_data_dir() / "golden" / ("text_agg_" + dtype + ".safetensors");
  io::SafetensorsFile file(path);
  Golden g;
  for (const auto& name : file.names()) g.t[name] = file.tensor(name);
  const auto words = nlohmann::json::parse(file.metadata().at("in_vocab"));
  for (size_t id = 0; id < words.size(); ++id) {
    const auto w = words[id].get<std::string>();
    g.vocab.continuation.push_back(w.rfind("##", 0) == 0 ? 1 : 0);
    if (w == "[SEP]") g.vocab.sep_id = static_cast<int64_t>(id);
  }
  g.cls_attention = g.t.at("in_attentions_last").mean(1).select(1, 0);
  return g;
}

class TextAggregationGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(TextAggregationGolden, OfficialVariantMatchesReference) {
  const auto g = load_golden(GetParam());
  const double rel = GetParam() == "float64" ? 1e-12 : 1e-6;
  EXPECT_EQ(g.vocab.sep_id, 3);
  // Our BERT's cls_attention[:, 1:] is the official last_layer_attn.
  EXPECT_TRUE(test::Close(g.cls_attention.narrow(1, 1, 15), g.t.at("last_layer_attn"), rel));

  const auto hidden = g.t.at("in_last_hidden_state").clone().requires_grad_(true);
  const auto out = aggregate_words(hidden, g.t.at("in_caption_ids"), g.cls_attention, g.vocab);
  EXPECT_TRUE(test::Close(out.report_feat, g.t.at("out_report_feat"), rel));
  EXPECT_TRUE(test::Close(out.word_feat, g.t.at("out_word_feat"), rel));
  EXPECT_TRUE(test::Close(out.word_weight, g.t.at("out_word_attn"), rel));
  EXPECT_TRUE(torch::equal(out.word_mask, g.t.at("out_words_pad_mask")));
  EXPECT_TRUE(torch::equal(out.num_words, g.t.at("out_num_words")));
  EXPECT_EQ(out.word_feat.scalar_type(), hidden.scalar_type());
  EXPECT_FALSE(out.word_weight.requires_grad());

  // Gradient: 1 for every token that ends up in a word, 0 for tokens the
  // official code drops (sample 2 is full length: "normal ##ly [SEP]" vanish).
  (out.report_feat.sum() + out.word_feat.sum()).backward();
  const auto used = hidden.grad().select(2, 0);
  const auto expected_used = torch::tensor({{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0},
                                            {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0},
                                            {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
                                            {1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
                                           hidden.options().requires_grad(false));
  EXPECT_TRUE(torch::equal(used, expected_used)) << used;
}

INSTANTIATE_TEST_SUITE_P(Dtypes, TextAggregationGolden, ::testing::Values("float32", "float64"),
                         [](const auto& info) { return info.param; });

TEST(TextAggregation, PaperVariantPairsEachTokenWithItsOwnAttention) {
  const auto g = load_golden("float64");
  const auto hidden = g.t.at("in_last_hidden_state");
  WordAggregationOptions paper;
  paper.official_pairing = false;
  const auto out = aggregate_words(hidden, g.t.at("in_caption_ids"), g.cls_attention, g.vocab, paper);
  // Word spans (token positions) written out from the token strings.
  const std::vector<std::vector<std::vector<int64_t>>> spans = {
      {{0}, {1}, {2, 3}, {4}, {5, 6}, {7}, {8}, {9}},
      {{0}, {1}, {2, 3, 4}, {5}, {6}, {7}, {8}, {9}, {10, 11, 12}, {13}, {14}},
      {{0}, {1}, {2}, {3, 4}, {5}, {6}, {7, 8, 9}, {10}, {11}, {12}, {13, 14}, {15}},  // nothing dropped
      {{0}, {1}, {2}, {3}, {4}}};  // '##s' after [CLS] is a word of its own
  auto feat = torch::zeros({4, 16, 8}, hidden.options());
  auto weight = torch::zeros({4, 16}, hidden.options());
  for (int64_t i = 0; i < 4; ++i) {
    for (size_t j = 0; j < spans[i].size(); ++j) {
      for (int64_t t : spans[i][j]) {
        feat[i][j] += hidden[i][t];
        weight[i][j] += g.cls_attention[i][t];
      }
    }
  }
  EXPECT_TRUE(torch::equal(out.num_words, torch::tensor({8, 11, 12, 5}, torch::kLong)));
  EXPECT_TRUE(test::Close(out.report_feat, feat.select(1, 0), 1e-12));
  EXPECT_TRUE(test::Close(out.word_feat, feat.narrow(1, 1, 15), 1e-12));
  EXPECT_TRUE(test::Close(out.word_weight, weight.narrow(1, 1, 15), 1e-12));
  const auto slots = torch::arange(1, 16).unsqueeze(0);
  EXPECT_TRUE(torch::equal(out.word_mask, slots.ge(out.num_words.unsqueeze(1))));
}

TEST(TextAggregation, RejectsBadInput) {
  const auto g = load_golden("float32");
  const auto hidden = g.t.at("in_last_hidden_state");
  auto ids = g.t.at("in_caption_ids").clone();
  ids[1][3] = 19;  // outside the 19-token vocabulary
  auto message = test::error_of([&] { aggregate_words(hidden, ids, g.cls_attention, g.vocab); });
  EXPECT_NE(message.find("sample 1 token 3 has id 19 outside the vocabulary of 19"), std::string::npos) << message;
  message = test::error_of(
      [&] { aggregate_words(hidden, g.t.at("in_caption_ids"), g.cls_attention.narrow(1, 1, 15), g.vocab); });
  EXPECT_NE(message.find("cls_attention must be [4, 16]"), std::string::npos) << message;
}

}  // namespace
}  // namespace mgca::model
