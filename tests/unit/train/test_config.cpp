// Job-file reading: defaults, overrides, the resolved TOML and the Boost
// archive round trips, and one test per kind of bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "mgca/comm/types.h"
#include "mgca/io/dataset_file.h"
#include "mgca/train/config.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace mgca::train {
namespace {

using test::error_of;

const char* kMinimal = "data.train = \"/data/set\"\n";

std::string parse_error(const std::string& toml, const std::vector<std::string>& overrides = {}) {
  return error_of([&] { parse_config(toml, "job.toml", overrides); });
}

TEST(Config, DefaultsAreThePaperSetting) {
  const Config c = parse_config(kMinimal, "job.toml");
  EXPECT_EQ(c.method, Method::Mgca);
  EXPECT_EQ(c.model.image_encoder, model::ImageEncoderKind::VitB16);
  EXPECT_EQ(c.model.text_layers, 6);
  EXPECT_EQ(c.data.batch_size, 72);
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 2e-5);
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.05);
  EXPECT_EQ(c.schedule.epochs, 50);
  EXPECT_DOUBLE_EQ(c.schedule.warmup_fraction, 0.4);
  EXPECT_DOUBLE_EQ(c.schedule.min_lr, 1e-8);
  EXPECT_EQ(c.objectives.freeze_prototypes_epochs, 1);
  EXPECT_TRUE(c.optimizer.no_decay.empty());
  EXPECT_EQ(c.run_dir(), fs::path("runs/mgca"));
  EXPECT_EQ(c.checkpoint_dir(), fs::path("runs/mgca/checkpoints"));
}

TEST(Config, ReadsEveryTypeAndIntegersAsFloats) {
  const Config c = parse_config(R"(
name = "x"
seed = 7
[data]
train = "/d"
batch_size = 8
[optimizer]
lr = 1          # an integer where a float is expected is fine
betas = [0.8, 0.99]
no_decay = ["bias", "norm"]
[runtime]
check_finite = false
)",
                                "job.toml");
  EXPECT_EQ(c.name, "x");
  EXPECT_EQ(c.seed, 7);
  EXPECT_EQ(c.data.batch_size, 8);
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 1.0);
  EXPECT_EQ(c.optimizer.betas, (std::vector<double>{0.8, 0.99}));
  EXPECT_EQ(c.optimizer.no_decay, (std::vector<std::string>{"bias", "norm"}));
  EXPECT_FALSE(c.runtime.check_finite);
}

TEST(Config, OverridesUseDottedKeysAndTomlValues) {
  const Config c = parse_config(kMinimal, "job.toml",
                                {"optimizer.lr=1e-4", "name=demo", "data.train=/other/place", "seed=3",
                                 "optimizer.betas=[0.5, 0.6]", "runtime.check_finite=false",
                                 "checkpoint.resume=none", "model.image_weights=\"a b.safetensors\""});
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 1e-4);
  EXPECT_EQ(c.name, "demo");
  EXPECT_EQ(c.data.train, "/other/place");
  EXPECT_EQ(c.seed, 3);
  EXPECT_EQ(c.optimizer.betas, (std::vector<double>{0.5, 0.6}));
  EXPECT_FALSE(c.runtime.check_finite);
  EXPECT_EQ(c.checkpoint.resume.mode, ResumeMode::None);
  EXPECT_EQ(c.model.image_weights, "a b.safetensors");
}

TEST(Config, QuirksFollowTheVariantUnlessGiven) {
  const Config official = parse_config(kMinimal, "job.toml");
  const auto& o = official.objectives;
  EXPECT_TRUE(o.quirk_pad_words_in_softmax && o.quirk_cls_attention_off_by_one &&
              o.quirk_vit_patch_output_unnormalized && o.ita_sum_directions && o.cta_sum_parts);
  const Config paper = parse_config(std::string(kMinimal) + "[objectives]\nvariant = \"paper\"\n", "job.toml");
  const auto& p = paper.objectives;
  EXPECT_FALSE(p.quirk_pad_words_in_softmax || p.quirk_cls_attention_off_by_one ||
               p.quirk_vit_patch_output_unnormalized || p.ita_sum_directions || p.cta_sum_parts);
  const Config mixed = parse_config(kMinimal, "job.toml",
                                    {"objectives.variant=paper", "objectives.quirk_cls_attention_off_by_one=true"});
  EXPECT_FALSE(mixed.objectives.quirk_pad_words_in_softmax);
  EXPECT_TRUE(mixed.objectives.quirk_cls_attention_off_by_one);
}

TEST(Config, NegativesAndSinkhornScopesAreGlobalUnlessSetAndIndependentOfTheVariant) {
  using objectives::Scope;
  const Config defaults = parse_config(kMinimal, "job.toml");
  EXPECT_EQ(defaults.objectives.negatives, Scope::Global);
  EXPECT_EQ(defaults.objectives.sinkhorn, Scope::Global);
  const Config local = parse_config(kMinimal, "job.toml",
                                    {"objectives.negatives=local", "objectives.sinkhorn=local", "objectives.variant=paper"});
  EXPECT_EQ(local.objectives.negatives, Scope::Local);
  EXPECT_EQ(local.objectives.sinkhorn, Scope::Local);
  EXPECT_EQ(parse_config(to_toml(local), "resolved.toml"), local);
  const std::string e = parse_error(std::string(kMinimal) + "[objectives]\nnegatives = \"per_gpu\"\n");
  EXPECT_NE(e.find("key 'objectives.negatives': \"per_gpu\" is not one of: global, local"), std::string::npos) << e;
}

// What a resume on another world size or batch names (the trainer warns with it).
TEST(Config, ResumeChangesNameWhatAnotherGlobalBatchChanges) {
  const Config two_by_4 = parse_config(kMinimal, "job.toml", {"data.batch_size=4"});
  const Config one_by_8 = parse_config(kMinimal, "job.toml", {"data.batch_size=8"});
  EXPECT_TRUE(resume_changes(two_by_4, 2, one_by_8, 1).empty());
  EXPECT_TRUE(resume_changes(two_by_4, 2, two_by_4, 2).empty());
  // Another N: the pools over the global batch, and the samples per step.
  auto changes = resume_changes(two_by_4, 2, one_by_8, 2);
  ASSERT_EQ(changes.size(), 4u);
  EXPECT_EQ(changes[0], "the ITA/ConVIRT negative pool (16 instead of 8 samples)");
  EXPECT_EQ(changes[1], "the Sinkhorn normalization (16 instead of 8 samples)");
  EXPECT_EQ(changes[2], "the BatchNorm statistics (16 instead of 8 samples)");
  EXPECT_NE(changes[3].find("the samples per optimizer step (16 instead of 8)"), std::string::npos) << changes[3];
  EXPECT_NE(changes[3].find("optimizer.lr is used as given"), std::string::npos) << changes[3];
  // The same N, but what is per rank sees another b.
  const Config local = parse_config(kMinimal, "job.toml",
                                    {"data.batch_size=8", "objectives.negatives=local", "objectives.sinkhorn=local",
                                     "model.batchnorm=per_rank"});
  changes = resume_changes(two_by_4, 2, local, 1);
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_NE(changes[0].find("objectives.negatives = \"local\" (8 instead of 4 rows per rank)"), std::string::npos);
  EXPECT_NE(changes[1].find("objectives.sinkhorn = \"local\""), std::string::npos);
  EXPECT_NE(changes[2].find("model.batchnorm = \"per_rank\""), std::string::npos);
  // Accumulation keeps the micro-batch but not the step.
  const Config accumulate = parse_config(kMinimal, "job.toml", {"data.batch_size=4", "optimizer.accumulate=2"});
  changes = resume_changes(two_by_4, 2, accumulate, 2);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_NE(changes[0].find("16 instead of 8"), std::string::npos);
}

TEST(Config, ResolvedTomlReadsBackIdentically) {
  Config c = parse_config(kMinimal, "job.toml",
                          {"optimizer.lr=3.3e-5", "schedule.min_lr=1e-9", "optimizer.no_decay=[\"bias\"]",
                           "name=with \"quotes\" and \\ backslash", "objectives.variant=paper",
                           "objectives.quirk_pad_words_in_softmax=true", "comm.timeout_s=0.1"});
  const std::string text = to_toml(c);
  const Config again = parse_config(text, "resolved.toml");
  EXPECT_TRUE(again == c) << text;
  // Every key is written, defaults included.
  for (const auto& key : config_keys()) {
    const std::string leaf = key.key.substr(key.key.rfind('.') == std::string::npos ? 0 : key.key.rfind('.') + 1);
    EXPECT_NE(text.find("\n" + leaf + " = "), std::string::npos) << key.key;
  }
}

TEST(Config, BoostArchiveRoundTrip) {
  Config c = parse_config(kMinimal, "job.toml",
                          {"optimizer.lr=1.234567890123e-5", "optimizer.no_decay=[\"a\", \"b\"]", "seed=99",
                           "model.partial_load=true", "text.vocab=/v/vocab.txt"});
  const Config back = deserialize(serialize(c));
  EXPECT_TRUE(back == c);
  EXPECT_EQ(back.optimizer.lr, 1.234567890123e-5);  // bit-exact double
  EXPECT_EQ(back.optimizer.no_decay, c.optimizer.no_decay);
  EXPECT_EQ(back.text.vocab, "/v/vocab.txt");
  EXPECT_FALSE(back == parse_config(kMinimal, "job.toml"));
  EXPECT_NE(error_of([] { deserialize("garbage"); }).find("cannot read the serialized config"), std::string::npos);
}

TEST(Config, KeyTableListsEveryKeyWithItsDefault) {
  const auto keys = config_keys();
  ASSERT_GT(keys.size(), 60u);
  const std::string table = config_keys_markdown();
  for (const auto& key : keys) {
    EXPECT_NE(table.find("| `" + key.key + "` |"), std::string::npos) << key.key;
    EXPECT_FALSE(key.doc.empty()) << key.key;
  }
  auto find = [&](const std::string& name) {
    for (const auto& key : keys) {
      if (key.key == name) return key;
    }
    ADD_FAILURE() << name;
    return ConfigKey{};
  };
  EXPECT_EQ(find("optimizer.lr").default_value, "2e-05");
  EXPECT_EQ(find("optimizer.lr").type, "float");
  EXPECT_EQ(find("method").choices, (std::vector<std::string>{"mgca", "convirt"}));
  EXPECT_EQ(find("optimizer.betas").default_value, "[0.9, 0.999]");
}

// ---- bad input: one test per kind ------------------------------------------

TEST(ConfigErrors, InvalidTomlNamesFileAndLine) {
  const std::string e = parse_error("data.train = \"/d\"\n[optimizer\nlr = 1\n");
  EXPECT_NE(e.find("job.toml:2:"), std::string::npos) << e;
  EXPECT_NE(e.find("not valid TOML"), std::string::npos) << e;
}

TEST(ConfigErrors, UnknownKeyInATableNamesTheValidKeys) {
  const std::string e = parse_error(std::string(kMinimal) + "[optimizer]\nlearning_rate = 1e-4\n");
  EXPECT_NE(e.find("job.toml:3:1"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key 'learning_rate' in table [optimizer]"), std::string::npos) << e;
  EXPECT_NE(e.find("valid keys of [optimizer]: name, lr, weight_decay, betas, eps, no_decay, grad_clip_norm, "
                   "accumulate"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, UnknownTopLevelKeyAndUnknownTable) {
  std::string e = parse_error(std::string(kMinimal) + "epochs = 3\n");
  EXPECT_NE(e.find("unknown key 'epochs' at the top level"), std::string::npos) << e;
  EXPECT_NE(e.find("valid keys: name, method, seed, output_dir"), std::string::npos) << e;
  EXPECT_NE(e.find("valid tables: model, text, data, objectives, optimizer, schedule"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal) + "[trainer]\nx = 1\n");
  EXPECT_NE(e.find("unknown key 'trainer' at the top level"), std::string::npos) << e;
}

TEST(ConfigErrors, NestedTableInsideASectionIsUnknown) {
  const std::string e = parse_error(std::string(kMinimal) + "[model.vit]\ndepth = 2\n");
  EXPECT_NE(e.find("unknown key 'vit' in table [model]"), std::string::npos) << e;
}

TEST(ConfigErrors, SectionThatIsNotATable) {
  const std::string e = parse_error(std::string(kMinimal) + "optimizer = 3\n");
  EXPECT_NE(e.find("'optimizer' must be a table"), std::string::npos) << e;
  EXPECT_NE(e.find("found an integer"), std::string::npos) << e;
}

TEST(ConfigErrors, WrongTypeNamesKeyExpectedAndFound) {
  std::string e = parse_error(std::string(kMinimal) + "[optimizer]\nlr = \"2e-5\"\n");
  EXPECT_NE(e.find("job.toml:3:6: key 'optimizer.lr': expected a float, found a string"), std::string::npos)
      << e;
  e = parse_error("[data]\ntrain = \"/d\"\nbatch_size = 7.5\n");
  EXPECT_NE(e.find("key 'data.batch_size': expected an integer, found a float"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal) + "[runtime]\ncheck_finite = \"yes\"\n");
  EXPECT_NE(e.find("key 'runtime.check_finite': expected a boolean, found a string"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal) + "[optimizer]\nbetas = [0.9, \"x\"]\n");
  EXPECT_NE(e.find("key 'optimizer.betas': expected an array of floats, found an array whose element 1 is a "
                   "string"),
            std::string::npos)
      << e;
  e = parse_error("[data]\ntrain = 5\n");
  EXPECT_NE(e.find("key 'data.train': expected a string, found an integer"), std::string::npos) << e;
}

TEST(ConfigErrors, ValueNotAmongTheChoices) {
  const std::string e = parse_error(std::string(kMinimal) + "[model]\nimage_encoder = \"vit_l14\"\n");
  EXPECT_NE(e.find("key 'model.image_encoder': \"vit_l14\" is not one of: vit_b16, vit_tiny, resnet50, "
                   "resnet50_tiny"),
            std::string::npos)
      << e;
}

TEST(ConfigErrors, CommBackendIsOneThatTheCommLayerParses) {
  const std::string e = parse_error(std::string(kMinimal) + "[comm]\nbackend = \"gloo\"\n");
  EXPECT_NE(e.find("key 'comm.backend': \"gloo\" is not one of: auto, mpi, nccl"), std::string::npos) << e;
  EXPECT_NE(parse_error(kMinimal, {"comm.backend=NCCL"}).find("\"NCCL\" is not one of"), std::string::npos);
  // The config's choices and comm::parse_backend agree, name for name.
  ConfigKey backend;
  for (const auto& key : config_keys()) {
    if (key.key == "comm.backend") backend = key;
  }
  ASSERT_EQ(backend.choices, (std::vector<std::string>{"auto", "mpi", "nccl"}));
  EXPECT_EQ(backend.default_value, "'auto'");
  for (const auto& name : backend.choices) {
    EXPECT_EQ(comm::backend_name(parse_config(kMinimal, "job.toml", {"comm.backend=" + name}).comm.communicator.backend), name);
    EXPECT_EQ(comm::backend_name(comm::parse_backend(name)), name);
  }
  EXPECT_TRUE(parse_config(kMinimal, "job.toml").comm.communicator.validate);  // on by default: ~0.6 µs a collective
}

TEST(ConfigErrors, OutOfRangeValues) {
  EXPECT_NE(parse_error(kMinimal, {"optimizer.lr=-1"}).find("key 'optimizer.lr': -1 must be > 0"),
            std::string::npos);
  EXPECT_NE(parse_error(kMinimal, {"data.batch_size=0"}).find("key 'data.batch_size': 0 must be >= 1"),
            std::string::npos);
  EXPECT_NE(parse_error(kMinimal, {"schedule.warmup_fraction=1.5"}).find("schedule.warmup_fraction"),
            std::string::npos);
  EXPECT_NE(parse_error(kMinimal, {"optimizer.betas=[0.9]"}).find("needs 2 values, got 1"), std::string::npos);
  EXPECT_NE(parse_error(kMinimal, {"name=a/b"}).find("key 'name'"), std::string::npos);
  EXPECT_NE(parse_error(kMinimal, {"method=convirt"}).find("ConVIRT uses a ResNet image encoder"),
            std::string::npos);
  EXPECT_NE(parse_error(kMinimal, {"model.image_size=256"}).find("must equal the ViT's image size 224"),
            std::string::npos);
  EXPECT_NE(parse_error(kMinimal, {"logging.straggler_factor=0.8"})
                .find("key 'logging.straggler_factor': 0.8 must be 0 (off) or > 1"),
            std::string::npos);
  EXPECT_NE(parse_error(kMinimal, {"logging.straggler_intervals=0"})
                .find("key 'logging.straggler_intervals': 0 must be >= 1"),
            std::string::npos);
}

TEST(ConfigErrors, MissingDatasetKey) {
  const std::string e = parse_error("name = \"x\"\n");
  EXPECT_NE(e.find("key 'data.train': a dataset folder is required"), std::string::npos) << e;
}

TEST(ConfigErrors, BadOverrides) {
  std::string e = parse_error(kMinimal, {"optimizer.learning_rate=1"});
  EXPECT_NE(e.find("--set optimizer.learning_rate=1: unknown key 'optimizer.learning_rate'; valid keys of "
                   "[optimizer]: name, lr"),
            std::string::npos)
      << e;
  e = parse_error(kMinimal, {"optimizer.lr=fast"});
  EXPECT_NE(e.find("--set optimizer.lr=fast: key 'optimizer.lr': expected a float, found 'fast'"),
            std::string::npos)
      << e;
  e = parse_error(kMinimal, {"data.batch_size=\"8\""});
  EXPECT_NE(e.find("expected an integer, found a string"), std::string::npos) << e;
  e = parse_error(kMinimal, {"optimizer.lr"});
  EXPECT_NE(e.find("--set optimizer.lr: expected key=value"), std::string::npos) << e;
  e = parse_error(kMinimal, {"method=simclr"});
  EXPECT_NE(e.find("\"simclr\" is not one of: mgca, convirt"), std::string::npos) << e;
  e = parse_error(kMinimal, {"bogus=1"});
  EXPECT_NE(e.find("unknown key 'bogus'; valid keys: "), std::string::npos) << e;
  // A literal value must be text TOML can hold (fuzz finding: a byte 0xFF was
  // written back as U+00FF, so the resolved job read back as another config).
  e = parse_error(kMinimal, {"model.image_weights=w\xff.safetensors"});
  EXPECT_NE(e.find("key 'model.image_weights': the value is not valid UTF-8 text"), std::string::npos) << e;
  EXPECT_EQ(parse_config(kMinimal, "job.toml", {"model.image_weights=wéights \"1\"\n.st"}).model.image_weights,
            "wéights \"1\"\n.st");
}

// A tiny dataset folder, with or without reports.
void write_dataset(const fs::path& dir, bool reports, const std::string& source, int64_t image_size = 224) {
  fs::create_directories(dir);
  io::ShardedWriter writer(dir, "part", image_size, {}, 10);
  const std::vector<uint8_t> image(static_cast<size_t>(image_size * image_size), 100);
  for (int i = 0; i < 3; ++i) writer.append("s" + std::to_string(i), reports ? "no acute findings" : "", image.data());
  io::DatasetManifest manifest;
  manifest.source = source;
  manifest.split = "train";
  manifest.image_size = image_size;
  manifest.shards = writer.finish();
  io::write_manifest(dir, manifest);
}

class ConfigPaths : public ::testing::Test {
 protected:
  void SetUp() override {
    write_dataset(dir_ / "set", true, "synth");
    test::write_text_file(dir_ / "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n");
  }
  // One 224-pixel crop per micro-batch fits the 3-sample, 224-pixel dataset.
  Config config(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> overrides = {"data.train=" + (dir_ / "set").string(),
                                          "text.vocab=" + (dir_ / "vocab.txt").string(), "data.batch_size=1"};
    overrides.insert(overrides.end(), extra.begin(), extra.end());
    return parse_config("", "job.toml", overrides);
  }
  test::TempDir dir_{"mgca-config"};
};

TEST_F(ConfigPaths, MissingDatasetFolder) {
  const std::string e = error_of([&] { check_paths(config({"data.train=" + (dir_ / "nope").string()})); });
  EXPECT_NE(e.find("data.train: dataset folder '" + (dir_ / "nope").string() + "' does not exist"),
            std::string::npos)
      << e;
}

TEST_F(ConfigPaths, FolderWithoutManifest) {
  fs::create_directories(dir_ / "empty");
  const std::string e = error_of([&] { check_paths(config({"data.train=" + (dir_ / "empty").string()})); });
  EXPECT_NE(e.find("is not a dataset folder (no dataset.json"), std::string::npos) << e;
}

TEST_F(ConfigPaths, AGoodJobPasses) { EXPECT_NO_THROW(check_paths(config())); }

TEST_F(ConfigPaths, DatasetWithoutReports) {
  write_dataset(dir_ / "labels-only", false, "chexpert");
  const std::string e = error_of([&] { check_paths(config({"data.train=" + (dir_ / "labels-only").string()})); });
  EXPECT_NE(e.find("(source \"chexpert\", 3 samples) has no reports: pretraining needs image-report pairs"),
            std::string::npos)
      << e;
}

TEST_F(ConfigPaths, CorruptManifest) {
  fs::create_directories(dir_ / "bad");
  test::write_text_file(dir_ / "bad" / "dataset.json", "{}");
  const std::string e = error_of([&] { check_paths(config({"data.train=" + (dir_ / "bad").string()})); });
  EXPECT_NE(e.find("data.train: cannot open dataset '" + (dir_ / "bad").string() + "'"), std::string::npos) << e;
}

TEST_F(ConfigPaths, MissingVocabWeightsAndResume) {
  std::string e = error_of([&] { check_paths(config({"text.vocab=/no/vocab.txt"})); });
  EXPECT_NE(e.find("text.vocab: vocabulary file '/no/vocab.txt' does not exist"), std::string::npos) << e;
  e = error_of([&] { check_paths(config({"model.image_weights=/no/w.safetensors"})); });
  EXPECT_NE(e.find("model.image_weights: weight file '/no/w.safetensors' does not exist"), std::string::npos) << e;
  e = error_of([&] { check_paths(config({"checkpoint.resume=/no/ckpt"})); });
  EXPECT_NE(e.find("checkpoint.resume: checkpoint folder '/no/ckpt' does not exist"), std::string::npos) << e;
  fs::create_directories(dir_ / "ckpt");
  e = error_of([&] { check_paths(config({"checkpoint.resume=" + (dir_ / "ckpt").string()})); });
  EXPECT_NE(e.find("is not a complete checkpoint (no DONE marker)"), std::string::npos) << e;
}

// Caught here, before start-up, rather than by the loader or the tokenizer on
// every rank after it: a micro-batch larger than the dataset, crops larger
// than its images, a vocabulary without the special tokens, a folder given
// where a file is expected.
TEST_F(ConfigPaths, JobsThatCannotRunOnTheirDataOrVocabulary) {
  std::string e = error_of([&] { check_paths(config(), /*world_size=*/4); });
  EXPECT_NE(e.find("data.batch_size: 4 ranks x 1 samples = 4 samples per micro-batch, more than the 3 samples"),
            std::string::npos)
      << e;
  EXPECT_NO_THROW(check_paths(config(), /*world_size=*/3));
  write_dataset(dir_ / "small", true, "synth", 64);
  e = error_of([&] { check_paths(config({"data.train=" + (dir_ / "small").string()})); });
  EXPECT_NE(e.find("model.image_size: 224-pixel crops do not fit the 64-pixel images"), std::string::npos) << e;
  test::write_text_file(dir_ / "no-pad.txt", "[UNK]\n[CLS]\n[SEP]\n");
  e = error_of([&] { check_paths(config({"text.vocab=" + (dir_ / "no-pad.txt").string()})); });
  EXPECT_NE(e.find("text.vocab: not a usable vocabulary"), std::string::npos) << e;
  EXPECT_NE(e.find("has no [PAD] token"), std::string::npos) << e;
  e = error_of([&] { check_paths(config({"text.vocab=" + dir_.path().string()})); });
  EXPECT_NE(e.find("text.vocab: vocabulary file '" + dir_.path().string() + "' is a folder, not a file"),
            std::string::npos)
      << e;
  e = error_of([&] { check_paths(config({"data.train=" + (dir_ / "vocab.txt").string()})); });
  EXPECT_NE(e.find("is a file, not a folder"), std::string::npos) << e;
}

// A range error names the --set that gave the value, not the job file.
TEST(ConfigParse, RangeErrorsNameTheSetThatCausedThem) {
  std::string e = parse_error("[data]\ntrain = \"/data/set\"\nbatch_size = 4\n", {"data.batch_size=0"});
  EXPECT_NE(e.find("--set data.batch_size=0: key 'data.batch_size': 0 must be >= 1"), std::string::npos) << e;
  e = parse_error("[data]\ntrain = \"/data/set\"\nbatch_size = 0\n", {"data.workers=2"});
  EXPECT_NE(e.find("job.toml: key 'data.batch_size': 0 must be >= 1"), std::string::npos) << e;
}

TEST(ConfigFile, LoadConfigNamesAMissingFileOrAFolder) {
  std::string e = error_of([] { load_config("/no/such/job.toml"); });
  EXPECT_NE(e.find("the job file '/no/such/job.toml' does not exist"), std::string::npos) << e;
  test::TempDir dir("mgca-job-folder");
  e = error_of([&] { load_config(dir.path()); });
  EXPECT_NE(e.find("the job file '" + dir.path().string() + "' is a folder, not a file"), std::string::npos) << e;
}

}  // namespace
}  // namespace mgca::train
