// The MGCA and ConVIRT tasks: model + objectives + the sharded loader.
#include <fmt/format.h>
#include <torch/torch.h>

#include "mgca/comm/exact_grad.h"
#include "mgca/data/loader.h"
#include "mgca/io/dataset_file.h"
#include "mgca/model/dropout.h"
#include "mgca/model/mgca_model.h"
#include "mgca/model/module_cast.h"
#include "mgca/model/weights.h"
#include "mgca/objectives/objectives.h"
#include "mgca/objectives/options.h"
#include "mgca/text/tokenizer.h"
#include "mgca/train/model_builder.h"
#include "mgca/train/run.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"
#include "mgca/util/nvtx.h"

namespace mgca::train {
namespace {

// The job's [objectives] with the two settings that follow the model.
objectives::ObjectiveOptions objective_options(const Config& config) {
  objectives::ObjectiveOptions o = config.objectives;
  o.num_prototypes = config.model.num_prototypes;
  o.patches_from_vit = model::is_vit(config.model.image_encoder);
  o.replicated = config.runtime.batch_invariant;
  o.validate();
  return o;
}

// Retrieval accuracy as the official code logs it (mgca_module.py,
// convirt_module.py): top-1/top-5 % averaged over image→report and
// report→image, each over this rank's rows against all N columns.
std::vector<std::pair<std::string, torch::Tensor>> accuracy_parts(const objectives::ItaResult& r) {
  return {{"acc1", ((r.acc1 + r.acc1_t2i) * 0.5).detach()}, {"acc5", ((r.acc5 + r.acc5_t2i) * 0.5).detach()}};
}

// How spread the Sinkhorn codes are: −Σ_k q_ik log q_ik (nats, at most log K),
// the mean over this rank's rows and both modalities. A diagnostic of
// objectives.sinkhorn (docs/training.md measures both settings).
torch::Tensor codes_entropy(const objectives::CpaResult& r) {
  torch::NoGradGuard no_grad;
  auto entropy = [](const torch::Tensor& q) { return -torch::xlogy(q, q).sum(1).mean(); };
  return (entropy(r.codes_img) + entropy(r.codes_report)) * 0.5;
}

void load_pretrained(torch::nn::Module& module, const std::string& file, bool partial, const char* key) {
  if (file.empty()) return;
  model::LoadOptions options;
  options.strict = !partial;
  const model::LoadReport report = model::load_weights(module, file, options);
  log::info("{}: {}", key, report.summary());
}

// The dataset, tokenizer and loader of a run.
class LoaderSource : public BatchSource {
 public:
  LoaderSource(const Config& config, const comm::Communicator& comm, torch::Device device, data::TextMode text,
             std::shared_ptr<const text::Tokenizer> tokenizer)
      : device_(device), dtype_(scalar_type(config.runtime.dtype)) {
    // check_paths verified the checksums on rank 0 before start-up.
    dataset_ = io::Dataset::open(config.data.train, {.verify_checksums = false});
    data::LoaderOptions options;
    options.global_batch_size = config.data.batch_size * comm.size();
    options.rank = comm.rank();
    options.world_size = comm.size();
    options.seed = static_cast<uint64_t>(config.seed);
    options.shuffle = true;
    options.drop_last = true;
    options.augment.pipeline = config.data.augment;
    options.augment.crop_size = config.model.image_size;
    options.text = text;
    options.max_length = config.text.max_length;
    options.num_threads = static_cast<int>(config.data.workers);
    options.prefetch = static_cast<int>(config.data.prefetch);
    options.device = device;
    loader_ = std::make_unique<data::Loader>(dataset_, std::move(tokenizer), options);
  }

  int64_t size() const override { return dataset_->size(); }
  void seek(int64_t epoch, int64_t batch) override { loader_->start(epoch, batch); }
  const data::Batch& next() override {
    std::optional<data::Batch> batch = loader_->next();
    MGCA_CHECK(batch.has_value(), "the loader ran past the end of epoch {} (step {})", loader_->epoch(),
               loader_->step());
    batch_ = batch->images.device() == device_ ? std::move(*batch) : batch->to(device_);
    if (batch_.images.scalar_type() != dtype_) batch_.images = batch_.images.to(dtype_);
    return batch_;
  }
  const data::Batch& batch() const override { return batch_; }

 private:
  torch::Device device_;
  torch::ScalarType dtype_;
  std::shared_ptr<io::Dataset> dataset_;
  std::unique_ptr<data::Loader> loader_;
  data::Batch batch_;
};

std::shared_ptr<text::Tokenizer> make_tokenizer(const Config& config) {
  return std::make_shared<text::Tokenizer>(
      text::Tokenizer::from_vocab_file(config.text.vocab, text::TokenizerOptions{config.text.lower_case}));
}

std::map<std::string, std::string> model_metadata(const Config& config) {
  return {{"image_encoder", util::enum_name(config.model.image_encoder)},
          {"image_size", std::to_string(config.model.image_size)},
          {"resnet_input_size", std::to_string(config.model.resnet_input_size)},
          {"text_encoder", util::enum_name(config.model.text_encoder)},
          {"embed_dim", std::to_string(config.model.embed_dim)}};
}

// What both tasks share: the job, the communicator, the objectives' options,
// the model (MgcaModel or ConvirtModel) with the job's pretrained encoder
// weights, the communicator for SyncBatchNorm, the device and dtype, in
// train mode, and the batch source (`source` when given (tests), else the
// job's loader), and the Task calls that only pass on to them.
template <typename ModelHolder>
class ContrastiveTask : public Task {
 public:
  torch::nn::Module& module() override { return *model_; }
  int64_t dataset_size() const override { return data_->size(); }
  int64_t batch_size() const override { return config_.data.batch_size; }
  void seek(int64_t epoch, int64_t batch) override { data_->seek(epoch, batch); }
  void next_batch() override { data_->next(); }
  std::map<std::string, std::string> metadata() const override { return model_metadata(config_); }
  comm::GradShadows* grad_shadows() override { return shadows_.get(); }

 protected:
  // make_model(tokenizer) builds the model.
  template <typename MakeModel>
  ContrastiveTask(const Config& config, std::shared_ptr<comm::Communicator> comm, torch::Device device,
                  std::unique_ptr<BatchSource> source, data::TextMode text_mode, MakeModel make_model)
      : config_(config), comm_(std::move(comm)), options_(objective_options(config)) {
    auto tokenizer = make_tokenizer(config);
    model_ = make_model(*tokenizer);
    const model::ModelOptions& m = config.model;
    load_pretrained(*model_->image, m.image_weights, m.partial_load, "model.image_weights");
    load_pretrained(*model_->text, m.text_weights, m.partial_load, "model.text_weights");
    model_->set_communicator(comm_);
    model::to_device_and_dtype(*model_, device, scalar_type(config.runtime.dtype));
    model_->train();
    if (config.runtime.batch_invariant) {
      std::vector<std::pair<std::string, torch::Tensor>> params;
      for (const auto& item : model_->named_parameters()) params.emplace_back(item.key(), item.value());
      shadows_ = std::make_unique<comm::GradShadows>(params);
    }
    data_ = source ? std::move(source)
                   : std::make_unique<LoaderSource>(config_, *comm_, device, text_mode, std::move(tokenizer));
  }

  // Keys the forward's dropout masks by (seed, epoch, micro-batch, global
  // sample index): the same masks for any W (model/dropout.h).
  model::DropoutKeyScope dropout_key(const data::Batch& batch) const {
    const auto indices = batch.indices.to(torch::kCPU, torch::kLong).contiguous();
    return model::DropoutKeyScope(static_cast<uint64_t>(config_.seed), batch.epoch, batch.step,
                                  std::vector<int64_t>(indices.data_ptr<int64_t>(), indices.data_ptr<int64_t>() + indices.numel()));
  }

  Config config_;
  std::shared_ptr<comm::Communicator> comm_;
  objectives::ObjectiveOptions options_;
  ModelHolder model_{nullptr};
  std::unique_ptr<BatchSource> data_;
  std::unique_ptr<comm::GradShadows> shadows_;  // runtime.batch_invariant
};

class MgcaTask : public ContrastiveTask<model::MgcaModel> {
 public:
  MgcaTask(const Config& config, std::shared_ptr<comm::Communicator> comm, torch::Device device,
           std::unique_ptr<BatchSource> source)
      : ContrastiveTask(config, std::move(comm), device, std::move(source), data::TextMode::Full,
                        [&](const text::Tokenizer& tokenizer) {
                          return model::MgcaModel(
                              mgca_model_config(config, tokenizer.vocab_size()),
                              model::WordVocabulary{tokenizer.continuation_table(), tokenizer.sep_id()});
                        }) {}

  LossParts forward() override {
    const data::Batch& batch = data_->batch();
    const auto key = dropout_key(batch);
    const comm::GradShadows::Scope exact(shadows_.get());
    const model::MgcaOutputs out = [&] {
      util::ScopedRange range("encoders");
      return model_->forward(batch.images, batch.input_ids, batch.attention_mask);
    }();
    objectives::MgcaObjectiveInputs in;
    in.img_emb = out.img_emb;
    in.report_emb = out.report_emb;
    in.patch_emb = out.patch_emb;
    in.word_emb = out.word_emb;
    in.word_weight = out.word_weight;
    in.word_mask = out.word_mask;
    if (out.patch_weight_from_attention) in.patch_weight = out.patch_weight;  // ResNet: uniform
    in.prototypes = model_->prototypes->weight;
    const objectives::MgcaObjectiveResult r = [&] {
      util::ScopedRange range("objectives");
      return objectives::mgca_objective(in, options_, comm_);
    }();
    LossParts parts{r.loss,
                    {{"loss", r.loss.detach()},
                     {"loss_ita", r.ita.loss.detach()},
                     {"loss_cta", r.cta.loss.detach()},
                     {"loss_cpa", r.cpa.loss.detach()},
                     {"loss_ita_i2t", r.ita.loss_i2t.detach()},
                     {"loss_ita_t2i", r.ita.loss_t2i.detach()},
                     {"loss_cta_word", r.cta.loss_word.detach()},
                     {"loss_cta_patch", r.cta.loss_patch.detach()},
                     {"loss_cpa_i2t", r.cpa.loss_i2t.detach()},
                     {"loss_cpa_t2i", r.cpa.loss_t2i.detach()}}};
    for (auto& part : accuracy_parts(r.ita)) parts.parts.push_back(std::move(part));
    parts.parts.emplace_back("codes_entropy", codes_entropy(r.cpa));
    return parts;
  }

  // docs/contract.md §2.3: prototype rows re-normalized (no grad) before every step.
  void before_step(int64_t) override { model_->prototypes->normalize_(); }

  // The official code drops the prototype gradient after backward during the
  // first freeze_prototypes_epochs epochs (on_after_backward): AdamW then
  // skips the prototypes entirely, weight decay included.
  void after_backward(int64_t epoch) override {
    if (epoch < config_.objectives.freeze_prototypes_epochs) {
      model_->prototypes->weight.mutable_grad() = torch::Tensor();
    }
  }
};

class ConvirtTask : public ContrastiveTask<model::ConvirtModel> {
 public:
  ConvirtTask(const Config& config, std::shared_ptr<comm::Communicator> comm, torch::Device device,
              std::unique_ptr<BatchSource> source)
      : ContrastiveTask(config, std::move(comm), device, std::move(source), data::TextMode::SampleSentence,
                        [&](const text::Tokenizer& tokenizer) {
                          return model::ConvirtModel(convirt_model_config(config, tokenizer.vocab_size()));
                        }) {}

  LossParts forward() override {
    const data::Batch& batch = data_->batch();
    const auto key = dropout_key(batch);
    const comm::GradShadows::Scope exact(shadows_.get());
    const model::ConvirtOutputs out = [&] {
      util::ScopedRange range("encoders");
      return model_->forward(batch.images, batch.input_ids, batch.attention_mask);
    }();
    const objectives::ItaResult r = [&] {
      util::ScopedRange range("objectives");
      return objectives::convirt_loss(out.img_emb, out.text_emb, options_, comm_);
    }();
    LossParts parts{r.loss,
                    {{"loss", r.loss.detach()}, {"loss_i2t", r.loss_i2t.detach()}, {"loss_t2i", r.loss_t2i.detach()}}};
    for (auto& part : accuracy_parts(r)) parts.parts.push_back(std::move(part));
    return parts;
  }
};

}  // namespace

std::unique_ptr<Task> make_task(const Config& config, std::shared_ptr<comm::Communicator> comm,
                                torch::Device device, std::unique_ptr<BatchSource> source) {
  switch (config.method) {
    case Method::Mgca: return std::make_unique<MgcaTask>(config, std::move(comm), device, std::move(source));
    case Method::Convirt: return std::make_unique<ConvirtTask>(config, std::move(comm), device, std::move(source));
  }
  MGCA_FAIL("method {} has no task", static_cast<int>(config.method));
}

}  // namespace mgca::train
