// The MGCA task of bench_step: the model and objectives `mgca train` builds
// from a job, fed from fixed synthetic batches (see bench_step.cpp), with a
// record of communication time, CPU time and page faults per step.
#pragma once

#include <sys/resource.h>
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/io/safetensors.h"
#include "mgca/model/config.h"
#include "mgca/model/mgca_model.h"
#include "mgca/objectives/objectives.h"
#include "mgca/objectives/options.h"
#include "mgca/text/tokenizer.h"
#include "mgca/train/config.h"
#include "mgca/train/task.h"
#include "mgca/util/error.h"
#include "timed_communicator.h"

namespace mgca::bench {

inline comm::CommOptions comm_options(const train::Config& c) {
  comm::CommOptions o;
  o.timeout_seconds = c.comm.timeout_s;
  o.validate = c.comm.validate;
  return o;
}

// The model of a job (SPEC §3 presets; the job's sizes override them).
inline model::MgcaModelConfig model_config(const train::Config& c) {
  const auto& m = c.model;
  model::MgcaModelConfig mc;
  if (m.image_encoder == "vit_b16") {
    mc.backbone = model::ImageBackbone::ViT;
    mc.vit = model::ViTConfig::base16();
  } else if (m.image_encoder == "vit_tiny") {
    mc.backbone = model::ImageBackbone::ViT;
    mc.vit = model::ViTConfig::tiny();
  } else {
    MGCA_FAIL("bench_step: model.image_encoder = '{}': the step benchmark covers vit_b16 and vit_tiny",
              m.image_encoder);
  }
  mc.vit.image_size = m.image_size;
  mc.bert = m.text_encoder == "bert_tiny" ? model::BertConfig::tiny() : model::BertConfig::clinical();
  mc.bert.num_layers = m.text_layers;
  mc.bert.hidden_dropout = m.dropout;
  mc.bert.attention_dropout = m.dropout;
  mc.head_hidden = m.head_hidden;
  mc.embed_dim = m.embed_dim;
  mc.num_prototypes = m.num_prototypes;
  mc.sync_batchnorm = m.batchnorm == "sync";
  mc.words.official_pairing = c.objectives.quirk_cls_attention_off_by_one;
  return mc;
}

inline objectives::ObjectiveOptions objective_options(const train::Config& c) {
  const auto& o = c.objectives;
  objectives::ObjectiveOptions r;
  r.set_variant(objectives::parse_variant(o.variant));
  r.quirk_pad_words_in_softmax = o.quirk_pad_words_in_softmax;
  r.quirk_cls_attention_off_by_one = o.quirk_cls_attention_off_by_one;
  r.quirk_vit_patch_output_unnormalized = o.quirk_vit_patch_output_unnormalized;
  r.ita_sum_directions = o.ita_sum_directions;
  r.cta_sum_parts = o.cta_sum_parts;
  r.ita_temperature = o.ita_temperature;
  r.local_temperature = o.local_temperature;
  r.proto_temperature = o.proto_temperature;
  r.sinkhorn_epsilon = o.sinkhorn_epsilon;
  r.sinkhorn_iterations = static_cast<int>(o.sinkhorn_iterations);
  r.num_prototypes = c.model.num_prototypes;
  r.freeze_prototypes_epochs = static_cast<int>(o.freeze_prototypes_epochs);
  r.weight_quantile_low = o.weight_quantile_low;
  r.weight_quantile_high = o.weight_quantile_high;
  r.lambda_ita = o.lambda_ita;
  r.lambda_cta = o.lambda_cta;
  r.lambda_cpa = o.lambda_cpa;
  r.patches_from_vit = true;
  r.validate();
  return r;
}

struct StepRecord {
  double comm_seconds = 0;  // inside communicator calls
  double cpu_seconds = 0;   // user + system time of the process (all threads)
  double page_faults = 0;   // minor page faults of the process
};

class SyntheticMgcaTask : public train::Task {
 public:
  // `inputs`: a safetensors file (images, input_ids, attention_mask); empty:
  // the error says how to make one.
  SyntheticMgcaTask(const train::Config& config, std::shared_ptr<TimedCommunicator> comm, torch::Device device,
                    const std::string& inputs)
      : comm_(std::move(comm)), device_(device), batch_(config.data.batch_size), opts_(objective_options(config)) {
    MGCA_CHECK(!inputs.empty(),
               "bench_step: --inputs is required (bench/reference/mgca_step.py --job JOB --write-inputs FILE)");
    const auto tok = text::Tokenizer::from_vocab_file(config.text.vocab);
    model::WordVocabulary vocab{tok.continuation_table(), tok.sep_id()};
    torch::manual_seed(static_cast<uint64_t>(config.seed));
    model_ = model::MgcaModel(model_config(config), vocab);
    model_->to(device_);
    model_->set_communicator(comm_);

    io::SafetensorsFile file(inputs);
    const auto images = file.tensor("images");
    const int64_t n = images.size(0);
    const int64_t length = config.text.max_length, size = config.model.image_size;
    images_ = file.tensor("images", torch::kFloat32, {n, 1, size, size}).to(device_);
    ids_ = file.tensor("input_ids", torch::kInt64, {n, length}).to(device_);
    mask_ = file.tensor("attention_mask", torch::kInt64, {n, length}).to(device_);
    const int64_t global = static_cast<int64_t>(comm_->size()) * batch_;
    batches_ = n / global;
    MGCA_CHECK(batches_ >= 1, "bench_step: {} holds {} samples, fewer than one global batch of {} ranks × {}",
               inputs, n, comm_->size(), batch_);
  }

  torch::nn::Module& module() override { return *model_; }
  int64_t dataset_size() const override { return batches_ * comm_->size() * batch_; }
  int64_t batch_size() const override { return batch_; }
  void seek(int64_t /*epoch*/, int64_t batch) override { next_ = batch; }

  void next_batch() override {
    const int64_t k = next_ % batches_;
    const int64_t first = (k * comm_->size() + comm_->rank()) * batch_;
    cur_images_ = images_.narrow(0, first, batch_);
    cur_ids_ = ids_.narrow(0, first, batch_);
    cur_mask_ = mask_.narrow(0, first, batch_);
    ++next_;
  }

  train::LossParts forward() override {
    const auto out = model_->forward(cur_images_, cur_ids_, cur_mask_);
    objectives::MgcaObjectiveInputs in;
    in.img_emb = out.img_emb;
    in.report_emb = out.report_emb;
    in.patch_emb = out.patch_emb;
    in.word_emb = out.word_emb;
    in.word_weight = out.word_weight;
    in.word_mask = out.word_mask;
    in.patch_weight = out.patch_weight_from_attention ? out.patch_weight : torch::Tensor();
    in.prototypes = model_->prototypes->weight;
    const auto r = objectives::mgca_objective(in, opts_, comm_);
    train::LossParts parts;
    parts.total = r.loss;
    parts.parts = {{"loss", r.loss},          {"loss_ita", r.ita.loss}, {"loss_cta", r.cta.loss},
                   {"loss_cpa", r.cpa.loss},  {"acc1", r.ita.acc1},     {"acc5", r.ita.acc5}};
    return parts;
  }

  void before_step(int64_t /*epoch*/) override {
    record_boundary();
    model_->prototypes->normalize_();
  }

  void after_backward(int64_t epoch) override {
    if (epoch < opts_.freeze_prototypes_epochs) model_->prototypes->weight.mutable_grad() = torch::Tensor();
  }

  // Per step: the differences between consecutive step starts.
  std::vector<StepRecord> step_records() const {
    std::vector<StepRecord> out;
    for (size_t i = 1; i < boundaries_.size(); ++i) {
      StepRecord r;
      r.comm_seconds = boundaries_[i].comm_seconds - boundaries_[i - 1].comm_seconds;
      r.cpu_seconds = boundaries_[i].cpu_seconds - boundaries_[i - 1].cpu_seconds;
      r.page_faults = boundaries_[i].page_faults - boundaries_[i - 1].page_faults;
      out.push_back(r);
    }
    return out;
  }

  void save_state(const std::filesystem::path& path) const {
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& p : model_->named_parameters(true)) tensors.emplace_back(p.key(), p.value().detach());
    for (const auto& b : model_->named_buffers(true)) tensors.emplace_back(b.key(), b.value());
    io::save_safetensors(path, tensors);
  }

  void save_inputs(const std::filesystem::path& path) const {
    io::save_safetensors(path, {{"images", images_}, {"input_ids", ids_}, {"attention_mask", mask_}});
  }

 private:
  void record_boundary() {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    StepRecord r;
    r.comm_seconds = comm_->seconds();
    r.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    r.page_faults = static_cast<double>(ru.ru_minflt);
    boundaries_.push_back(r);
  }

  std::shared_ptr<TimedCommunicator> comm_;
  torch::Device device_;
  int64_t batch_;
  objectives::ObjectiveOptions opts_;
  model::MgcaModel model_{nullptr};
  torch::Tensor images_, ids_, mask_;
  torch::Tensor cur_images_, cur_ids_, cur_mask_;
  int64_t batches_ = 0, next_ = 0;
  std::vector<StepRecord> boundaries_;
};

}  // namespace mgca::bench
