// Checkpoint folders: the rank-state archive, listing/pruning, the complete
// save/load cycle (bit-exact tensors), and the errors for bad checkpoints.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "mgca/comm/communicator.h"
#include "mgca/io/safetensors.h"
#include "mgca/train/checkpoint.h"
#include "mgca/train/config.h"
#include "mgca/train/export.h"
#include "mgca/util/error.h"
#include "mgca/util/files.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace mgca::train {
namespace {

using test::error_of;

struct Net : torch::nn::Module {
  Net() {
    fc = register_module("fc", torch::nn::Linear(4, 3));
    bn = register_module("bn", torch::nn::BatchNorm1d(3));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

TEST(RankState, ArchiveRoundTrip) {
  RankState s;
  s.step = 123;
  s.epoch = 4;
  s.batch_in_epoch = 17;
  s.samples_seen = 98765;
  s.rank = 3;
  s.world_size = 8;
  s.seed = 42;
  s.cpu_rng = {0, 1, 2, 255, 128};
  s.train_seconds = 12.25;
  const RankState back = deserialize_rank_state(serialize(s), "x");
  EXPECT_EQ(back.step, 123);
  EXPECT_EQ(back.epoch, 4);
  EXPECT_EQ(back.batch_in_epoch, 17);
  EXPECT_EQ(back.samples_seen, 98765);
  EXPECT_EQ(back.rank, 3);
  EXPECT_EQ(back.world_size, 8);
  EXPECT_EQ(back.seed, 42);
  EXPECT_EQ(back.cpu_rng, s.cpu_rng);
  EXPECT_TRUE(back.cuda_rng.empty());
  EXPECT_EQ(back.train_seconds, 12.25);
  const std::string e = error_of([] { deserialize_rank_state("not an archive", "ckpt/rank-00000.state"); });
  EXPECT_NE(e.find("'ckpt/rank-00000.state': not a readable rank state"), std::string::npos) << e;
  EXPECT_NE(e.find("the file is corrupt"), std::string::npos) << e;
}

// A rank state carries the SHA-256 of its archive: any flipped byte after the
// checksum line is a clear error naming the file; a file written before the
// checksum existed (the bare archive) still loads.
TEST(RankState, ChecksumCatchesEveryFlippedByteAndOldFilesLoad) {
  RankState s;
  s.step = 1000;
  s.rank = 1;
  s.world_size = 2;
  s.cpu_rng = {7, 8, 9};
  const std::string file = serialize(s);
  ASSERT_EQ(file.rfind("mgca-rank-state sha256 ", 0), 0u) << file;
  const size_t body = file.find('\n') + 1;
  for (size_t i = body; i < file.size(); ++i) {
    std::string flipped = file;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x01);
    const std::string e = error_of([&] { deserialize_rank_state(flipped, "ckpt/rank-00001.state"); });
    EXPECT_NE(e.find("'ckpt/rank-00001.state': checksum mismatch"), std::string::npos) << "byte " << i << ": " << e;
  }
  const std::string truncated = error_of([&] { deserialize_rank_state(file.substr(0, body - 1), "r.state"); });
  EXPECT_NE(truncated.find("'r.state': truncated rank state"), std::string::npos) << truncated;
  const RankState old = deserialize_rank_state(file.substr(body), "old/rank-00001.state");
  EXPECT_EQ(old.step, 1000);
  EXPECT_EQ(old.rank, 1);
  EXPECT_EQ(old.cpu_rng, s.cpu_rng);
}

TEST(CheckpointFiles, ListingIgnoresIncompleteAndPrunes) {
  test::TempDir dir("mgca-ckpt");
  EXPECT_TRUE(complete_checkpoints(dir / "absent").empty());
  for (int64_t step : {5, 20, 10}) {
    fs::create_directories(dir / checkpoint_name(step));
    util::write_file_atomic(dir / checkpoint_name(step) / "DONE", "x");
  }
  fs::create_directories(dir / checkpoint_name(30));  // no DONE: interrupted
  fs::create_directories(dir / (checkpoint_name(40) + ".tmp"));
  fs::create_directories(dir / "other");
  EXPECT_EQ(checkpoint_name(20), "step-00000020");
  const auto all = complete_checkpoints(dir.path());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].step, 5);
  EXPECT_EQ(all[2].step, 20);
  EXPECT_EQ(newest_checkpoint(dir.path())->step, 20);
  prune_checkpoints(dir.path(), 2);
  EXPECT_FALSE(fs::exists(dir / checkpoint_name(5)));
  EXPECT_TRUE(fs::exists(dir / checkpoint_name(10)));
  EXPECT_TRUE(fs::exists(dir / checkpoint_name(20)));
  EXPECT_FALSE(fs::exists(dir / (checkpoint_name(40) + ".tmp")));
  EXPECT_TRUE(fs::exists(dir / "other"));
}

TEST(CheckpointFiles, NamesAndTheirInverses) {
  EXPECT_EQ(checkpoint_name(1000), "step-00001000");
  EXPECT_EQ(checkpoint_step(checkpoint_name(1000)), 1000);
  EXPECT_EQ(tmp_checkpoint_step(checkpoint_tmp_name(42)), 42);
  EXPECT_EQ(checkpoint_step(checkpoint_tmp_name(42)), -1);
  EXPECT_EQ(checkpoint_rank_file("ck", 3), std::filesystem::path("ck/rank-00003.state"));
  EXPECT_EQ(checkpoint_rank_of(checkpoint_rank_file("ck", 123456).filename().string()), 123456);
  for (const char* other : {"rank-.state", "rank-00001.state.tmp", "rank-0x1.state", "model.safetensors",
                            "rank-99999999999999.state"}) {
    EXPECT_EQ(checkpoint_rank_of(other), -1) << other;
  }
}

TEST(Checkpoint, SaveAndLoadAreBitExact) {
  test::TempDir dir("mgca-ckpt");
  torch::manual_seed(3);
  Net net;
  net.train();
  net.bn->forward(torch::randn({6, 3}));  // running statistics become non-trivial
  auto comm = comm::Communicator::single();
  CheckpointContent content;
  content.model = module_state(net);
  content.optimizer = {{"exp_avg/fc.weight", torch::randn({3, 4})}, {"step/fc.weight", torch::full({1}, 7, torch::kInt64)}};
  content.metadata = {{"format", "mgca-checkpoint"}, {"step", "11"}};
  content.config_toml = "name = \"x\"\n";
  RankState state;
  state.step = 11;
  state.cpu_rng = {9, 8, 7};
  const fs::path saved = save_checkpoint(dir.path(), 11, content, state, 2, *comm);
  EXPECT_EQ(saved, dir / "step-00000011");
  EXPECT_TRUE(is_complete_checkpoint(saved));
  EXPECT_EQ(util::read_file(saved / "config.toml"), "name = \"x\"\n");
  EXPECT_EQ(load_model_metadata(saved).at("step"), "11");

  torch::manual_seed(99);
  Net other;
  load_module_state(other, load_model_tensors(saved), saved.string());
  for (const auto& [name, tensor] : module_state(other)) {
    bool found = false;
    for (const auto& [n, t] : content.model) {
      if (n == name) {
        EXPECT_TRUE(torch::equal(t, tensor)) << name;
        found = true;
      }
    }
    EXPECT_TRUE(found) << name;
  }
  const auto optimizer = load_optimizer_tensors(saved);
  EXPECT_TRUE(torch::equal(optimizer.at("exp_avg/fc.weight"), content.optimizer[0].second));
  EXPECT_EQ(optimizer.at("step/fc.weight").item<int64_t>(), 7);
  EXPECT_EQ(load_rank_state(saved, 0)->cpu_rng, state.cpu_rng);
  EXPECT_FALSE(load_rank_state(saved, 1).has_value());

  // Saving more steps keeps the newest two.
  save_checkpoint(dir.path(), 12, content, state, 2, *comm);
  save_checkpoint(dir.path(), 13, content, state, 2, *comm);
  const auto all = complete_checkpoints(dir.path());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].step, 12);
  EXPECT_EQ(all[1].step, 13);
}

// The background writer writes what the synchronous save writes, byte for
// byte, from a snapshot: changes made after submit() do not reach the file.
TEST(CheckpointWriter, WritesTheSnapshotAsTheSynchronousSaveDoes) {
  test::TempDir dir("mgca-ckpt-async");
  torch::manual_seed(4);
  Net net;
  auto comm = comm::Communicator::single();
  CheckpointContent content;
  content.model = module_state(net);
  content.optimizer = {{"exp_avg/fc.weight", torch::randn({3, 4})}, {"step/fc.weight", torch::full({1}, 2, torch::kInt64)}};
  content.metadata = {{"format", "mgca-checkpoint"}, {"step", "5"}};
  content.config_toml = "name = \"y\"\n";
  RankState state;
  state.step = 5;
  const fs::path sync = save_checkpoint(dir / "sync", 5, content, state, 3, *comm);

  CheckpointWriter writer(dir / "async", 3, comm);
  EXPECT_EQ(writer.wait(), fs::path());  // nothing submitted yet
  writer.submit(5, content, state);
  {
    torch::NoGradGuard no_grad;
    net.fc->weight.add_(1.0);  // the next step changes the model in place while the write runs
    content.optimizer[0].second.mul_(3.0);
  }
  const fs::path written = writer.wait();
  EXPECT_EQ(written, dir / "async" / "step-00000005");
  EXPECT_TRUE(is_complete_checkpoint(written));
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "rank-00000.state", "config.toml"}) {
    EXPECT_EQ(util::read_file(written / file), util::read_file(sync / file)) << file;
  }
  // The next snapshot reuses the host buffers and sees the new values.
  writer.submit(6, content, state);
  EXPECT_TRUE(torch::equal(load_model_tensors(writer.wait()).at("fc.weight"), net.fc->weight));
  EXPECT_EQ(complete_checkpoints(dir / "async").size(), 2u);
}

TEST(CheckpointWriter, AWriteErrorNamesTheFileAndReachesTheCaller) {
  test::TempDir dir("mgca-ckpt-async-error");
  test::write_text_file(dir / "not-a-folder", "x");  // the checkpoint directory cannot be created
  auto comm = comm::Communicator::single();
  Net net;
  CheckpointContent content;
  content.model = module_state(net);
  RankState state;
  CheckpointWriter writer(dir / "not-a-folder" / "checkpoints", 3, comm);
  writer.submit(1, content, state);
  const std::string error = error_of([&] { writer.wait(); });
  EXPECT_NE(error.find("checkpoint: preparing the folder"), std::string::npos) << error;
  EXPECT_NE(error.find("not-a-folder"), std::string::npos) << error;
  EXPECT_TRUE(writer.failed());
  EXPECT_EQ(error_of([&] { writer.wait(); }), "");  // reported once, then the writer is idle
}

TEST(Checkpoint, ModelMismatchListsEveryProblem) {
  Net net;
  auto tensors = std::map<std::string, torch::Tensor>();
  for (const auto& [name, t] : module_state(net)) tensors[name] = t.clone();
  tensors.erase("fc.bias");
  tensors["fc.weight"] = torch::zeros({3, 5});
  tensors["head.weight"] = torch::zeros({1});
  const torch::Tensor before = net.fc->weight.detach().clone();
  const std::string e = error_of([&] { load_module_state(net, tensors, "ckpt/model.safetensors"); });
  EXPECT_NE(e.find("ckpt/model.safetensors: cannot load into"), std::string::npos) << e;
  EXPECT_NE(e.find("1 missing, 1 unexpected, 1 mis-shaped"), std::string::npos) << e;
  EXPECT_NE(e.find("missing (1):\n    fc.bias"), std::string::npos) << e;
  EXPECT_NE(e.find("fc.weight: checkpoint [3, 5], model [3, 4]"), std::string::npos) << e;
  EXPECT_NE(e.find("unexpected (1):\n    head.weight"), std::string::npos) << e;
  // Nothing was copied: the failed load left the module as it was.
  EXPECT_TRUE(net.fc->weight.equal(before));
}

TEST(Checkpoint, ModelDtypeMustMatchForAnExactResume) {
  Net net;
  auto tensors = std::map<std::string, torch::Tensor>();
  for (const auto& [name, t] : module_state(net)) tensors[name] = t.clone();
  tensors["fc.weight"] = tensors["fc.weight"].to(torch::kFloat64);
  const std::string e = error_of([&] { load_module_state(net, tensors, "ckpt/model.safetensors"); });
  EXPECT_NE(e.find("fc.weight: checkpoint dtype Double, model dtype Float"), std::string::npos) << e;
}

TEST(Export, ImageEncoderAloneWithTheMetadataEvalReads) {
  test::TempDir dir("mgca-export");
  const Config config = parse_config("data.train = \"/d\"\n[model]\nimage_encoder = \"vit_tiny\"\nimage_size = 64\n",
                                     "job.toml", {"output_dir=" + dir.path().string(), "name=run"});
  CheckpointContent content;
  const torch::Tensor w = torch::randn({4, 3});
  content.model = {{"image.patch_embed.weight", w}, {"image.cls_token", torch::zeros({1, 1, 3})},
                   {"text.embeddings.weight", torch::ones({5, 3})}, {"prototypes.weight", torch::ones({2, 3})}};
  content.metadata = {{"step", "7"}};
  content.config_toml = to_toml(config);
  RankState state;
  auto comm = comm::Communicator::single();
  save_checkpoint(config.checkpoint_dir(), 7, content, state, 3, *comm);

  // A run folder resolves to its newest checkpoint.
  EXPECT_EQ(resolve_checkpoint(config.run_dir()), config.checkpoint_dir() / "step-00000007");
  const fs::path out = dir / "enc" / "encoder.safetensors";
  EXPECT_EQ(export_image_encoder(config.run_dir(), out), 2);
  io::SafetensorsFile file(out);
  EXPECT_EQ(file.names().size(), 2u);
  EXPECT_TRUE(torch::equal(file.tensor("patch_embed.weight"), w));
  EXPECT_TRUE(file.contains("cls_token"));
  EXPECT_FALSE(file.contains("text.embeddings.weight"));
  EXPECT_EQ(file.metadata().at("format"), "mgca-image-encoder");
  EXPECT_EQ(file.metadata().at("image_encoder"), "vit_tiny");
  EXPECT_EQ(file.metadata().at("image_size"), "64");
  EXPECT_EQ(file.metadata().at("resnet_input_size"), "299");
  EXPECT_EQ(file.metadata().at("step"), "7");
  EXPECT_TRUE(parse_config(file.metadata().at("config"), "meta") == config);
}

TEST(Export, ErrorsNameTheProblem) {
  test::TempDir dir("mgca-export");
  EXPECT_NE(error_of([&] { resolve_checkpoint(dir / "none"); }).find("does not exist"), std::string::npos);
  EXPECT_NE(error_of([&] { resolve_checkpoint(dir.path()); }).find("holds no complete checkpoint"),
            std::string::npos);
  fs::create_directories(dir / "step-00000001");
  util::write_file_atomic(dir / "step-00000001" / "DONE", "x");
  EXPECT_NE(error_of([&] { export_image_encoder(dir / "step-00000001", dir / "e.safetensors"); })
                .find("has no config.toml"),
            std::string::npos);
}

}  // namespace
}  // namespace mgca::train
