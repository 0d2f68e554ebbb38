// Models for evaluation: checkpoint folders, exported encoders, random init.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <optional>

#include "mgca/eval/encoder.h"
#include "mgca/eval/flows.h"
#include "mgca/io/safetensors.h"
#include "mgca/model/mgca_model.h"
#include "mgca/train/checkpoint.h"
#include "mgca/train/config.h"
#include "mgca/util/error.h"
#include "support/tensor_checks.h"
#include "support/test_support.h"

namespace mgca::eval {
namespace {

using test::error_of;

namespace fs = std::filesystem;

fs::path vocab() { return mgca::test::shared_data_dir() / "vocab/bert-base-cased-vocab.txt"; }

train::Config tiny_config() {
  const auto job = mgca::test::source_dir() / "jobs/ci-tiny.toml";
  return train::parse_config(mgca::test::read_text_file(job), job.string(),
                             {"text.vocab=\"" + vocab().string() + "\""});
}

// A checkpoint folder as the trainer writes it: config.toml + model.safetensors.
void write_checkpoint(const fs::path& dir, const train::Config& config, uint64_t seed) {
  auto model = EvalModel::random_init(config, seed);
  fs::create_directories(dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, tensor] : train::module_state(*model.module())) tensors.emplace_back(name, tensor);
  io::save_safetensors(dir / "model.safetensors", tensors);
  mgca::test::write_text_file(dir / "config.toml", train::to_toml(config));
}

TEST(EvalModel, CheckpointEmbeddingsMatchTheModelsForward) {
  mgca::test::TempDir dir;
  const auto config = tiny_config();
  write_checkpoint(dir / "run/checkpoints/step-00000004", config, 5);
  mgca::test::write_text_file(dir / "run/checkpoints/step-00000004/DONE", "");
  // The run folder resolves to its newest complete checkpoint.
  auto model = EvalModel::from_checkpoint(dir / "run");
  EXPECT_EQ(model.method(), "mgca");
  EXPECT_TRUE(model.has_text());
  EXPECT_EQ(model.feature_dim(), 192);
  EXPECT_EQ(model.embed_dim(), 32);
  EXPECT_EQ(model.weights_sha256().size(), 64u);

  torch::manual_seed(1);
  auto images = torch::randn({3, 1, 64, 64});
  const auto [ids, mask] = model.tokenize({"no acute findings\nheart size normal", "left effusion",
                                           "small right pneumothorax\nlines in place"});
  EXPECT_EQ(ids.size(1), config.text.max_length);
  EXPECT_EQ(ids[0][0].item<int64_t>(), model.tokenizer()->cls_id());
  auto* mgca = dynamic_cast<model::MgcaModelImpl*>(model.module().get());
  ASSERT_NE(mgca, nullptr);
  torch::NoGradGuard no_grad;
  const auto out = mgca->forward(images, ids, mask);
  EXPECT_TRUE(mgca::test::AllClose(model.image_embeddings(images), out.img_emb, 1e-5, 1e-6));
  EXPECT_TRUE(mgca::test::AllClose(model.report_embeddings(ids, mask), out.report_emb, 1e-5, 1e-6));
  EXPECT_TRUE(mgca::test::AllClose(model.image_features(images), mgca->image->forward(images).global,
                                   1e-6, 1e-7));
}

TEST(EvalModel, ExportedEncoderGivesTheCheckpointsFeatures) {
  mgca::test::TempDir dir;
  const auto config = tiny_config();
  write_checkpoint(dir / "ckpt", config, 6);
  auto trained = EvalModel::from_checkpoint(dir / "ckpt");
  save_image_encoder(trained, dir / "encoder.safetensors");
  auto encoder = EvalModel::from_exported_encoder(dir / "encoder.safetensors");
  EXPECT_EQ(encoder.method(), "image-encoder");
  EXPECT_FALSE(encoder.has_text());
  auto images = torch::randn({2, 1, 64, 64});
  EXPECT_TRUE(torch::equal(encoder.image_features(images), trained.image_features(images)));
  EXPECT_NE(encoder.identity(), trained.identity());  // another file

  // Random init: one image encoder per architecture and seed, whatever it came from.
  auto r1 = EvalModel::random_init(trained, 0, /*image_only=*/true);
  auto r2 = EvalModel::random_init(encoder, 0, /*image_only=*/true);
  auto r3 = EvalModel::random_init(encoder, 1, /*image_only=*/true);
  EXPECT_EQ(r1.identity(), r2.identity());
  EXPECT_NE(r1.identity(), r3.identity());
  EXPECT_TRUE(torch::equal(r1.image_features(images), r2.image_features(images)));
  EXPECT_FALSE(torch::equal(r1.image_features(images), r3.image_features(images)));
  EXPECT_FALSE(torch::equal(r1.image_features(images), trained.image_features(images)));
  EXPECT_EQ(r1.name(), "random init (vit_tiny)");
  EXPECT_THROW(EvalModel::random_init(encoder, 0, /*image_only=*/false), mgca::Error);
  auto whole = EvalModel::random_init(trained, 0, /*image_only=*/false);
  EXPECT_TRUE(whole.has_text());
  EXPECT_NE(whole.identity(), r1.identity());
}

// mgca eval's rows: a checkpoint and its exported encoder share one random
// image encoder (the probe's), listed first; retrieval gets a whole random
// model; a request without models, or with encoders for retrieval, is a UsageError.
TEST(EvaluationModels, OneRandomRowPerArchitectureListedFirst) {
  mgca::test::TempDir dir;
  write_checkpoint(dir / "ckpt", tiny_config(), 6);
  save_image_encoder(EvalModel::from_checkpoint(dir / "ckpt"), dir / "encoder.safetensors");
  ModelSources sources;
  sources.checkpoints = {dir / "ckpt"};
  sources.encoders = {dir / "encoder.safetensors"};
  sources.random_seed = 4;
  const auto probe_rows = load_evaluation_models(sources, torch::kCPU, /*need_text=*/false);
  ASSERT_EQ(probe_rows.size(), 3u);
  EXPECT_TRUE(probe_rows[0].is_random());
  EXPECT_EQ(probe_rows[0].name(), "random init (vit_tiny)");
  EXPECT_EQ(probe_rows[0].random_seed(), std::optional<uint64_t>(4));
  EXPECT_FALSE(probe_rows[0].has_text());
  EXPECT_EQ(probe_rows[1].method(), "mgca");
  EXPECT_EQ(probe_rows[2].method(), "image-encoder");

  const auto usage = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const UsageError& error) {
      return std::string(error.what());
    }
    return std::string("no UsageError");
  };
  auto text = usage([&] { load_evaluation_models(sources, torch::kCPU, /*need_text=*/true); });
  EXPECT_NE(text.find("retrieval and zero-shot need a --checkpoint"), std::string::npos) << text;
  text = usage([&] { load_evaluation_models(ModelSources{}, torch::kCPU, /*need_text=*/false); });
  EXPECT_NE(text.find("give at least one --checkpoint or --encoder"), std::string::npos) << text;

  sources.encoders.clear();
  const auto retrieval_rows = load_evaluation_models(sources, torch::kCPU, /*need_text=*/true);
  ASSERT_EQ(retrieval_rows.size(), 2u);
  EXPECT_TRUE(retrieval_rows[0].is_random());
  EXPECT_TRUE(retrieval_rows[0].has_text());
}

// Zero-shot prompts: the templates on the lower-cased class name, or the
// file's lists; a class the file lacks is an error naming file and class.
TEST(ZeroShotPrompts, TemplatesOrTheFilesLists) {
  const auto templated = class_prompts("", {"Pleural Effusion"});
  ASSERT_EQ(templated.size(), 1u);
  ASSERT_EQ(templated[0].size(), default_prompt_templates().size());
  EXPECT_EQ(templated[0][0], "pleural effusion");
  EXPECT_EQ(templated[0][1], "there is pleural effusion");
  mgca::test::TempDir dir;
  const auto file = dir / "prompts.json";
  mgca::test::write_text_file(file, R"({"Edema": ["edema", "fluid overload"]})");
  const auto listed = class_prompts(file, {"Edema"});
  EXPECT_EQ(listed, (std::vector<std::vector<std::string>>{{"edema", "fluid overload"}}));
  const auto text = error_of([&] { class_prompts(file, {"Edema", "Pneumonia"}); });
  EXPECT_NE(text.find("no prompt list for class 'Pneumonia'"), std::string::npos) << text;
  EXPECT_NE(text.find("prompts.json"), std::string::npos) << text;
}

TEST(EvalModel, BadFilesAreClearErrors) {
  mgca::test::TempDir dir;
  // An encoder file without the metadata contract.
  io::save_safetensors(dir / "plain.safetensors", {{"x", torch::zeros({1})}});
  auto text = error_of([&] { EvalModel::from_exported_encoder(dir / "plain.safetensors"); });
  EXPECT_NE(text.find("plain.safetensors: metadata key 'format' missing"), std::string::npos) << text;
  io::save_safetensors(dir / "wrong.safetensors", {{"x", torch::zeros({1})}},
                       {{"format", "mgca-image-encoder"}, {"image_encoder", "vit_huge"},
                        {"image_size", "64"}, {"resnet_input_size", "0"}});
  text = error_of([&] { EvalModel::from_exported_encoder(dir / "wrong.safetensors"); });
  EXPECT_NE(text.find("unknown image encoder 'vit_huge'"), std::string::npos) << text;
  io::save_safetensors(dir / "size.safetensors", {{"x", torch::zeros({1})}},
                       {{"format", "mgca-image-encoder"}, {"image_encoder", "vit_tiny"},
                        {"image_size", "sixty"}, {"resnet_input_size", "0"}});
  text = error_of([&] { EvalModel::from_exported_encoder(dir / "size.safetensors"); });
  EXPECT_NE(text.find("'image_size' = 'sixty'"), std::string::npos) << text;
  // Tensors that do not fit the architecture: the loader lists them.
  io::save_safetensors(dir / "tensors.safetensors", {{"x", torch::zeros({1})}},
                       {{"format", "mgca-image-encoder"}, {"image_encoder", "vit_tiny"},
                        {"image_size", "64"}, {"resnet_input_size", "0"}});
  text = error_of([&] { EvalModel::from_exported_encoder(dir / "tensors.safetensors"); });
  EXPECT_NE(text.find("tensors.safetensors"), std::string::npos) << text;
  // A checkpoint without its config.
  fs::create_directories(dir / "ckpt");
  io::save_safetensors(dir / "ckpt/model.safetensors", {{"x", torch::zeros({1})}});
  text = error_of([&] { EvalModel::from_checkpoint(dir / "ckpt"); });
  EXPECT_NE(text.find("architecture is unknown"), std::string::npos) << text;
  text = error_of([&] { EvalModel::from_checkpoint(dir / "nothing"); });
  EXPECT_NE(text.find("nothing"), std::string::npos) << text;
}

}  // namespace
}  // namespace mgca::eval
