// Mixed precision checks shared by tests/mpi/amp (CPU, W = 1, 2) and
// tests/gpu/amp (CUDA): a full training step of `mgca train`'s own tasks
// (make_task: MGCA with the tiny ViT or ResNet, ConVIRT with the tiny ResNet)
// under bf16 autocast against the same step in fp32, and the parts that must
// stay fp32 whatever the autocast state (objectives, Sinkhorn, SyncBatchNorm).
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/comm/sync_batchnorm.h"
#include "mgca/data/batch.h"
#include "mgca/model/mgca_model.h"
#include "mgca/objectives/objectives.h"
#include "mgca/text/tokenizer.h"
#include "mgca/train/config.h"
#include "mgca/train/model_builder.h"
#include "mgca/train/run.h"
#include "mgca/train/trainer.h"
#include "mgca/util/error.h"
#include "mgca/util/torch_compat.h"
#include "support/tensor_checks.h"
#include "support/test_support.h"

namespace mgca::test::amp {

// Tolerances of a bf16-autocast step against the fp32 step on the same
// weights and batch (16 samples per rank). bf16 keeps 8 significant bits
// (relative rounding 2^-9 ≈ 0.2 % per value); through random-init encoders,
// BatchNorm heads and ITA's τ = 0.07 that grows to percents. Measured on
// CPU, worst loss part over W = 1, 2: MGCA ViT 2.2 % (loss_ita_i2t), MGCA
// ResNet 9.1 % (loss_ita_i2t at W = 2), ConVIRT 0.06 %. A bf16 op inside the
// objectives is caught at 1e-6 by expect_objectives_fp32_under_autocast.
inline constexpr double kLossRtol = 0.15;
inline constexpr double kLossAtol = 0.05;
// The whole gradient (every parameter, one vector): its cosine to the fp32
// gradient and the ratio of the norms. Measured cosines 0.83 (MGCA ViT and
// ResNet) to 0.98 (ConVIRT), norm ratios 0.75 (MGCA ResNet, W = 2) to 1.05:
// parameters whose exact gradient is ~0 (biases right before a BatchNorm)
// get only rounding noise, larger in bf16. A gradient in the wrong dtype,
// scale or direction lands far outside both.
inline constexpr double kGradientMinCosine = 0.75;
inline constexpr double kGradientNormRtol = 0.35;

// The ci-tiny job (jobs/ci-tiny.toml) with `method` and `image_encoder`, at
// the demo's 16 samples per rank: the heads' BatchNorm over 4 rows of a
// random-init model standardizes feature columns whose spread is below bf16's
// rounding of their values, which turns the bf16 step into noise (the
// tolerance question is then BatchNorm's, not the code's).
inline train::Config tiny_config(const std::string& method, const std::string& image_encoder,
                                 const std::string& device, const std::string& autocast) {
  const auto job = source_dir() / "jobs" / "ci-tiny.toml";
  return train::parse_config(read_text_file(job), job.string(),
                             {"method=\"" + method + "\"", "model.image_encoder=\"" + image_encoder + "\"",
                              "text.vocab=\"" + (shared_data_dir() / "vocab" / "bert-base-cased-vocab.txt").string() +
                                  "\"",
                              "runtime.device=\"" + device + "\"", "runtime.autocast=\"" + autocast + "\"",
                              "data.batch_size=16"});
}

// One fixed global batch of random gray images and tokenized random reports;
// rank r takes rows r·b … (the loader's contract).
class RandomSource : public train::BatchSource {
 public:
  RandomSource(const train::Config& config, const comm::Communicator& comm, torch::Device device) {
    const int64_t b = config.data.batch_size, global = b * comm.size(), size = config.model.image_size;
    auto generator = at::make_generator<at::CPUGeneratorImpl>(1234);
    auto images = torch::randn({global, 1, size, size}, generator);
    const auto tokenizer = text::Tokenizer::from_vocab_file(config.text.vocab);
    const std::vector<std::string> words = {"no",     "acute",  "cardiopulmonary", "process", "the",
                                            "heart",  "size",   "is",              "normal",  "mild",
                                            "left",   "basilar", "atelectasis",    "lungs",   "clear",
                                            "stable", "effusion", "pneumothorax",  "seen",    "."};
    auto pick = torch::randint(static_cast<int64_t>(words.size()), {global, 40}, generator);
    auto lengths = torch::randint(4, 40, {global}, generator);
    auto ids = torch::empty({global, config.text.max_length}, torch::kInt64);
    auto mask = torch::empty_like(ids);
    for (int64_t i = 0; i < global; ++i) {
      std::string report;
      for (int64_t j = 0; j < lengths[i].item<int64_t>(); ++j) report += words[pick[i][j].item<int64_t>()] + " ";
      const auto encoding = tokenizer.encode(report, config.text.max_length);
      ids[i] = torch::tensor(encoding.input_ids, torch::kInt64);
      mask[i] = torch::tensor(encoding.attention_mask, torch::kInt64);
    }
    const int64_t first = comm.rank() * b;
    batch_.images = images.narrow(0, first, b).to(device);
    batch_.input_ids = ids.narrow(0, first, b).to(device);
    batch_.attention_mask = mask.narrow(0, first, b).to(device);
    batch_.indices = torch::arange(first, first + b, torch::kInt64);
    size_ = global;
  }
  int64_t size() const override { return size_; }
  void seek(int64_t, int64_t) override {}
  const data::Batch& next() override { return batch_; }
  const data::Batch& batch() const override { return batch_; }

 private:
  data::Batch batch_;
  int64_t size_ = 0;
};

struct StepOutcome {
  std::map<std::string, double> parts;  // this rank's loss parts and accuracies
  torch::Tensor gradient;               // every parameter's gradient of this rank, flattened, float64, CPU
};

// One forward under the trainer's autocast rule (train::uses_autocast,
// compat::AutocastGuard) and one backward, on this rank, from the weights
// torch seed 7 gives (the same on every rank). Gradients are not averaged.
inline StepOutcome run_step(const train::Config& config, const std::shared_ptr<comm::Communicator>& comm,
                            torch::Device device) {
  torch::manual_seed(7);
  auto task = train::make_task(config, comm, device, std::make_unique<RandomSource>(config, *comm, device));
  task->seek(0, 0);
  task->before_step(0);
  task->next_batch();
  train::LossParts loss;
  {
    compat::AutocastGuard autocast(train::uses_autocast(config, device), device.type(), at::kBFloat16);
    loss = task->forward();
  }
  loss.total.backward();
  StepOutcome out;
  for (const auto& [name, value] : loss.parts) out.parts[name] = value.item<double>();
  std::vector<torch::Tensor> grads;
  for (const auto& param : task->module().parameters()) {
    if (!param.grad().defined()) continue;
    EXPECT_EQ(param.grad().scalar_type(), param.scalar_type()) << "a gradient's dtype differs from its weight's";
    grads.push_back(param.grad().detach().flatten().to(torch::kCPU, torch::kFloat64));
  }
  out.gradient = torch::cat(grads);
  return out;
}

// The bf16 step of `config` next to its fp32 step: finite, and within the
// tolerances above.
inline void expect_bf16_step_close_to_fp32(train::Config config, const std::shared_ptr<comm::Communicator>& comm,
                                           torch::Device device) {
  config.runtime.autocast = train::Autocast::BFloat16;
  ASSERT_TRUE(train::uses_autocast(config, device));
  const StepOutcome mixed = run_step(config, comm, device);
  config.runtime.autocast = train::Autocast::None;
  ASSERT_FALSE(train::uses_autocast(config, device));
  const StepOutcome full = run_step(config, comm, device);

  ASSERT_EQ(mixed.parts.size(), full.parts.size());
  std::string worst;
  double worst_deviation = -1;
  for (const auto& [name, reference] : full.parts) {
    const double value = mixed.parts.at(name);
    if (name.rfind("loss", 0) != 0) continue;  // accuracies: a rank flip is a whole row
    EXPECT_TRUE(std::isfinite(value)) << name;
    EXPECT_NEAR(value, reference, kLossRtol * std::abs(reference) + kLossAtol)
        << name << " under bf16 autocast vs fp32 (rank " << comm->rank() << ")";
    const double deviation = std::abs(value - reference) / std::abs(reference);
    if (deviation > worst_deviation) {
      worst_deviation = deviation;
      worst = name;
    }
  }
  ASSERT_EQ(mixed.gradient.numel(), full.gradient.numel()) << "bf16 and fp32 reach different parameters";
  EXPECT_TRUE(torch::isfinite(mixed.gradient).all().item<bool>()) << "a bf16 gradient is not finite";
  const double cosine =
      (mixed.gradient.dot(full.gradient) / (mixed.gradient.norm() * full.gradient.norm())).item<double>();
  EXPECT_GT(cosine, kGradientMinCosine) << "the bf16 gradient points elsewhere than the fp32 one";
  const double norm_ratio = (mixed.gradient.norm() / full.gradient.norm()).item<double>();
  EXPECT_NEAR(norm_ratio, 1.0, kGradientNormRtol);
  // The figures docs/training.md quotes.
  std::printf("[rank %d] bf16 vs fp32: worst loss part %s %.2e relative; gradient cosine %.5f, norm ratio %.4f\n",
              comm->rank(), worst.c_str(), worst_deviation, cosine, norm_ratio);
}

// The MGCA objectives on the model's bf16 outputs under autocast equal the
// objectives on the same values in fp32 without autocast: every op inside ran
// in fp32 (a bf16 matmul or softmax would show at ~1e-3). The codes and the
// CTA probabilities are fp32; backward runs (the dtype error the saved bf16
// logits used to raise).
inline void expect_objectives_fp32_under_autocast(const std::string& image_encoder,
                                                  const std::shared_ptr<comm::Communicator>& comm,
                                                  torch::Device device) {
  const train::Config config = tiny_config("mgca", image_encoder, device.is_cuda() ? "cuda" : "cpu", "bf16");
  torch::manual_seed(7);
  const auto tokenizer = text::Tokenizer::from_vocab_file(config.text.vocab);
  model::MgcaModel model(train::mgca_model_config(config, tokenizer.vocab_size()),
                         model::WordVocabulary{tokenizer.continuation_table(), tokenizer.sep_id()});
  model->set_communicator(comm);
  model->to(device);
  model->train();
  RandomSource source(config, *comm, device);
  const data::Batch& batch = source.next();

  objectives::ObjectiveOptions options;
  options.num_prototypes = config.model.num_prototypes;
  options.patches_from_vit = model::is_vit(config.model.image_encoder);
  objectives::normalize_prototypes_(model->prototypes->weight);

  compat::AutocastGuard autocast(true, device.type(), at::kBFloat16);
  const model::MgcaOutputs out = model->forward(batch.images, batch.input_ids, batch.attention_mask);
  ASSERT_EQ(out.img_emb.scalar_type(), torch::kBFloat16) << "autocast did not reach the model";
  objectives::MgcaObjectiveInputs in{out.img_emb,  out.report_emb, out.patch_emb,
                                     out.word_emb, out.word_weight, out.word_mask,
                                     out.patch_weight_from_attention ? out.patch_weight : torch::Tensor(),
                                     model->prototypes->weight};
  objectives::CtaTrace trace;
  const auto mixed = objectives::mgca_objective(in, options, comm, &trace);

  // The same values as fp32 leaves, autocast off.
  auto fp32 = [](const torch::Tensor& t) {
    return t.defined() && t.is_floating_point() ? t.detach().to(torch::kFloat) : t;
  };
  objectives::MgcaObjectiveInputs reference_in{fp32(in.img_emb),    fp32(in.report_emb),  fp32(in.patch_emb),
                                               fp32(in.word_emb),   fp32(in.word_weight), in.word_mask,
                                               fp32(in.patch_weight), fp32(in.prototypes)};
  objectives::MgcaObjectiveResult reference;
  {
    compat::AutocastOffGuard off;
    reference = objectives::mgca_objective(reference_in, options, comm);
  }
  const std::vector<std::pair<const char*, std::pair<torch::Tensor, torch::Tensor>>> parts = {
      {"ita", {mixed.ita.loss, reference.ita.loss}},      {"cta", {mixed.cta.loss, reference.cta.loss}},
      {"cpa", {mixed.cpa.loss, reference.cpa.loss}},      {"loss", {mixed.loss, reference.loss}},
      {"codes_img", {mixed.cpa.codes_img, reference.cpa.codes_img}}};
  for (const auto& [name, pair] : parts) {
    EXPECT_EQ(pair.first.scalar_type(), torch::kFloat) << name;
    EXPECT_TRUE(AllClose(pair.first, pair.second, 1e-6, 1e-7)) << name << " under autocast vs fp32";
  }
  EXPECT_EQ(mixed.cpa.codes_report.scalar_type(), torch::kFloat);
  EXPECT_EQ(trace.word_to_patch_attention.scalar_type(), torch::kFloat);
  EXPECT_EQ(trace.patch_to_word_attention.scalar_type(), torch::kFloat);
  EXPECT_EQ(trace.word_sim.scalar_type(), torch::kFloat);
  EXPECT_EQ(trace.ce_word_row.scalar_type(), torch::kFloat);

  // Sinkhorn alone, called under autocast with bf16 scores: fp32 codes.
  auto scores = torch::randn({4, options.num_prototypes}, torch::TensorOptions().device(device)).to(torch::kBFloat16);
  EXPECT_EQ(objectives::sinkhorn(scores, 0.05, 3, comm).scalar_type(), torch::kFloat);

  mixed.loss.backward();  // ITA/ConVIRT's saved softmax, CTA's log-softmaxes: fp32 in, input dtype out
  for (const auto& param : model->parameters()) {
    if (param.grad().defined()) {
      EXPECT_TRUE(torch::isfinite(param.grad()).all().item<bool>());
    }
  }
}

// SyncBatchNorm under autocast: a bf16 input's global statistics are
// computed in fp32 (running_mean with momentum 1 is the mean over all ranks'
// rows, to fp32 accuracy; bf16 statistics would miss by ~1e-3).
inline void expect_syncbn_statistics_fp32(const std::shared_ptr<comm::Communicator>& comm, torch::Device device) {
  const int64_t b = 8, channels = 16;
  comm::SyncBatchNormOptions options;
  options.num_features = channels;
  options.momentum = 1.0;
  comm::SyncBatchNorm bn(options, comm);
  bn->to(device);
  bn->train();
  auto generator = at::make_generator<at::CPUGeneratorImpl>(99);
  auto all = (torch::randn({b * comm->size(), channels}, generator) * 3.0 + 10.0).to(torch::kBFloat16);
  auto mine = all.narrow(0, comm->rank() * b, b).to(device).requires_grad_(true);
  torch::Tensor y;
  {
    compat::AutocastGuard autocast(true, device.type(), at::kBFloat16);
    y = bn(mine);
  }
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(bn->running_mean.scalar_type(), torch::kFloat);
  const auto expected = all.to(torch::kFloat64).mean(0);
  EXPECT_TRUE(AllClose(bn->running_mean, expected, 1e-6, 1e-6)) << "SyncBatchNorm statistics not in fp32";
  y.to(torch::kFloat).square().sum().backward();
  EXPECT_EQ(mine.grad().scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::isfinite(mine.grad()).all().item<bool>());
}

}  // namespace mgca::test::amp
