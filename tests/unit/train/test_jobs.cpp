// Every job file in jobs/ reads without error, and the paper settings hold
// the published numbers.
#include <gtest/gtest.h>

#include <filesystem>

#include "mgca/train/config.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace mgca::train {
namespace {

Config job(const std::string& name) {
  const fs::path path = test::source_dir() / "jobs" / name;
  return parse_config(test::read_text_file(path), path.string());
}

TEST(Jobs, EveryJobFileParses) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator(test::source_dir() / "jobs")) {
    if (entry.path().extension() != ".toml") continue;
    ++count;
    try {
      parse_config(test::read_text_file(entry.path()), entry.path().string());
    } catch (const mgca::Error& e) {
      ADD_FAILURE() << entry.path() << ": " << e.what();
    }
  }
  EXPECT_GE(count, 5);
}

TEST(Jobs, MgcaPaperSetting) {
  const Config c = job("mgca-vit-b16.toml");
  EXPECT_EQ(c.method, Method::Mgca);
  EXPECT_EQ(c.model.image_encoder, model::ImageEncoderKind::VitB16);
  EXPECT_EQ(c.model.text_encoder, model::TextEncoderKind::Bert);
  EXPECT_EQ(c.model.text_layers, 6);
  EXPECT_EQ(c.model.embed_dim, 128);
  EXPECT_EQ(c.model.num_prototypes, 500);
  EXPECT_EQ(c.data.batch_size, 72);
  EXPECT_EQ(c.optimizer.name, OptimizerKind::AdamW);
  EXPECT_EQ(c.optimizer.lr, 2e-5);
  EXPECT_EQ(c.optimizer.weight_decay, 0.05);
  EXPECT_TRUE(c.optimizer.no_decay.empty());
  EXPECT_EQ(c.schedule.epochs, 50);
  EXPECT_EQ(c.schedule.warmup_fraction, 0.4);
  EXPECT_EQ(c.schedule.min_lr, 1e-8);
  EXPECT_EQ(c.objectives.freeze_prototypes_epochs, 1);
  EXPECT_EQ(c.objectives.lambda_ita, 1.0);
  EXPECT_EQ(c.objectives.lambda_cta, 1.0);
  EXPECT_EQ(c.objectives.lambda_cpa, 1.0);
}

TEST(Jobs, MgcaResNet) {
  const Config c = job("mgca-resnet50.toml");
  EXPECT_EQ(c.model.image_encoder, model::ImageEncoderKind::Resnet50);
  EXPECT_EQ(c.model.resnet_input_size, 299);
  EXPECT_EQ(c.optimizer.lr, 2e-5);
  EXPECT_EQ(c.schedule.epochs, 50);
}

TEST(Jobs, ConvirtSetting) {
  const Config c = job("convirt-resnet50.toml");
  EXPECT_EQ(c.method, Method::Convirt);
  EXPECT_EQ(c.model.image_encoder, model::ImageEncoderKind::Resnet50);
  EXPECT_EQ(c.model.text_layers, 12);
  EXPECT_TRUE(c.model.freeze_text_embeddings);
  EXPECT_EQ(c.model.freeze_text_layers, 6);
  EXPECT_EQ(c.model.embed_dim, 512);
  EXPECT_EQ(c.objectives.convirt_lambda, 0.75);
  EXPECT_EQ(c.objectives.convirt_temperature, 0.1);
  EXPECT_EQ(c.optimizer.name, OptimizerKind::Adam);
  EXPECT_EQ(c.optimizer.lr, 1e-4);
  EXPECT_EQ(c.data.augment, data::Pipeline::Convirt);
}

TEST(Jobs, SmallJobsRunOnCpu) {
  for (const char* name : {"cpu-demo.toml", "ci-tiny.toml"}) {
    const Config c = job(name);
    EXPECT_EQ(c.runtime.device, util::DeviceChoice::Cpu) << name;
    EXPECT_EQ(c.model.image_encoder, model::ImageEncoderKind::VitTiny) << name;
    EXPECT_EQ(c.model.text_encoder, model::TextEncoderKind::BertTiny) << name;
  }
}

}  // namespace
}  // namespace mgca::train
