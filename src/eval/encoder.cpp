#include "mgca/eval/encoder.h"

#include <torch/torch.h>

#include <cmath>

#include "mgca/io/dataset_file.h"
#include "mgca/io/safetensors.h"
#include "mgca/model/mgca_model.h"
#include "mgca/model/resnet.h"
#include "mgca/model/vit.h"
#include "mgca/model/weights.h"
#include "mgca/train/checkpoint.h"
#include "mgca/train/checkpoint_files.h"
#include "mgca/train/export.h"
#include "mgca/train/model_builder.h"
#include "mgca/util/error.h"
#include "mgca/util/files.h"

namespace fs = std::filesystem;

namespace mgca::eval {

namespace {

torch::Tensor l2_normalize(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  return F::normalize(x.to(torch::kFloat32), F::NormalizeFuncOptions().dim(-1));
}

std::shared_ptr<model::ImageEncoderImpl> make_image_encoder(const model::ModelOptions& m) {
  if (model::is_vit(m.image_encoder)) return std::make_shared<model::ViTImpl>(train::vit_config(m));
  return std::make_shared<model::ResNetImpl>(train::resnet_config(m));
}

// The vocab file of a run config: as given, or relative to the ancestors of
// the checkpoint (the run was started from one of them).
fs::path find_vocab(const fs::path& configured, const fs::path& override_path, const fs::path& near) {
  if (!override_path.empty()) {
    MGCA_CHECK(fs::is_regular_file(override_path), "vocabulary {} not found", override_path.string());
    return override_path;
  }
  std::vector<fs::path> tried = {configured};
  if (fs::is_regular_file(configured)) return configured;
  if (configured.is_relative() && !near.empty()) {
    for (fs::path dir = fs::absolute(near); dir.has_relative_path(); dir = dir.parent_path()) {
      tried.push_back(dir / configured);
      if (fs::is_regular_file(tried.back())) return tried.back();
    }
  }
  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t.string();
  MGCA_FAIL("the run's vocabulary '{}' was not found (tried {}); pass --vocab FILE",
            configured.string(), list);
}

train::Config parse_run_config(const std::string& toml, const std::string& source) {
  return train::parse_config(toml, source);
}

}  // namespace

std::string EvalModel::identity() const {
  if (random_seed_ && !full_) {
    const auto& m = config_.model;
    return fmt::format("random-init seed {} image encoder {} image_size {} resnet_input_size {}",
                       *random_seed_, util::enum_name(m.image_encoder), m.image_size, m.resnet_input_size);
  }
  if (random_seed_) {
    const std::string toml = train::to_toml(config_);
    return fmt::format("random-init seed {} model {}", *random_seed_,
                       io::sha256_hex(toml.data(), toml.size()));
  }
  return "sha256 " + weights_sha256_;
}

void EvalModel::build(bool image_only, const fs::path& vocab) {
  const auto& m = config_.model;
  if (image_only) {
    method_ = "image-encoder";
    image_ = make_image_encoder(m);
    full_ = nullptr;
  } else {
    tokenizer_ = std::make_shared<text::Tokenizer>(text::Tokenizer::from_vocab_file(
        vocab, text::TokenizerOptions{config_.text.lower_case}));
    vocab_ = vocab;
    method_ = util::enum_name(config_.method);
    const int64_t vocab_size = tokenizer_->vocab_size();
    // The trainer's mapping of a run config onto the model's shapes
    // (train/model_builder.h), with per-process BatchNorm: evaluation runs
    // in eval mode on each rank's own batch.
    if (config_.method == train::Method::Mgca) {
      auto c = train::mgca_model_config(config_, vocab_size);
      c.sync_batchnorm = false;
      auto mgca = std::make_shared<model::MgcaModelImpl>(
          c, model::WordVocabulary{tokenizer_->continuation_table(), tokenizer_->sep_id()});
      image_ = mgca->image;
      full_ = mgca;
    } else {
      auto c = train::convirt_model_config(config_, vocab_size);
      c.sync_batchnorm = false;
      auto convirt = std::make_shared<model::ConvirtModelImpl>(c);
      image_ = convirt->image;
      full_ = convirt;
    }
  }
  module()->eval();
}

std::shared_ptr<torch::nn::Module> EvalModel::module() const {
  if (full_) return full_;
  return image_;
}

EvalModel EvalModel::from_checkpoint(const fs::path& given, const ModelLoadOptions& options) {
  // A checkpoint folder, its model.safetensors, or a folder of checkpoints /
  // a run folder (the newest complete checkpoint is taken).
  fs::path path = given;
  if (fs::is_directory(path) && !fs::exists(train::checkpoint_model_file(path))) {
    for (const fs::path& dir : {path, path / "checkpoints"}) {
      if (auto newest = train::newest_checkpoint(dir)) {
        path = newest->path;
        break;
      }
    }
  }
  const fs::path file = train::checkpoint_model_file(path);
  MGCA_CHECK(fs::is_regular_file(file), "checkpoint {}: no model file {}", path.string(),
             file.string());
  std::string toml;
  std::string source;
  const fs::path beside = file.parent_path() / "config.toml";
  if (fs::is_regular_file(beside)) {
    toml = util::read_file(beside);
    source = beside.string();
  } else {
    const io::SafetensorsFile st(file);
    for (const char* key : {"config", "config_toml", "config.toml"}) {
      const auto found = st.metadata().find(key);
      if (found != st.metadata().end()) {
        toml = found->second;
        source = file.string() + " (metadata '" + key + "')";
        break;
      }
    }
    MGCA_CHECK(!st.metadata().count("format") ||
                   st.metadata().at("format") != train::kImageEncoderFormat,
               "{} is an exported image encoder, not a checkpoint: use --encoder", file.string());
  }
  MGCA_CHECK(!toml.empty(),
             "checkpoint {}: neither a config.toml beside it nor a 'config' metadata entry, so its "
             "architecture is unknown",
             file.string());
  EvalModel out;
  out.config_ = parse_run_config(toml, source);
  out.build(/*image_only=*/false, find_vocab(out.config_.text.vocab, options.vocab, file.parent_path()));
  out.weights_path_ = file;
  out.weights_sha256_ = io::sha256_file(file);
  out.name_ = given.string();
  train::load_module_state(*out.full_, train::load_model_tensors(file), file.string());
  out.full_->eval();
  return out;
}

EvalModel EvalModel::from_exported_encoder(const fs::path& path) {
  const std::string problem = util::file_problem(path);
  MGCA_CHECK(problem.empty(), "--encoder: exported encoder file '{}' {}", path.string(), problem);
  const io::SafetensorsFile st(path);
  const auto& meta = st.metadata();
  auto get = [&](const char* key) -> std::string {
    const auto found = meta.find(key);
    MGCA_CHECK(found != meta.end(),
               "{}: metadata key '{}' missing; an exported image encoder has format, "
               "image_encoder, image_size, resnet_input_size (docs/evaluation.md)",
               path.string(), key);
    return found->second;
  };
  const std::string format = get("format");
  MGCA_CHECK(format == train::kImageEncoderFormat, "{}: metadata format is '{}', expected '{}'",
             path.string(), format, train::kImageEncoderFormat);
  EvalModel out;
  if (meta.count("config")) out.config_ = parse_run_config(meta.at("config"), path.string() + " (metadata 'config')");
  auto& m = out.config_.model;
  const std::string kind = get("image_encoder");
  const auto encoder = util::enum_from_name<model::ImageEncoderKind>(kind);
  MGCA_CHECK(encoder.has_value(), "{}: metadata 'image_encoder': unknown image encoder '{}'; valid: {}",
             path.string(), kind, util::enum_choices<model::ImageEncoderKind>());
  m.image_encoder = *encoder;
  auto integer = [&](const char* key) {
    const std::string text = get(key);
    try {
      size_t used = 0;
      const long long v = std::stoll(text, &used);
      if (used == text.size() && v >= 0) return static_cast<int64_t>(v);
    } catch (const std::exception&) {
    }
    MGCA_FAIL("{}: metadata '{}' = '{}' is not a non-negative integer", path.string(), key, text);
  };
  m.image_size = integer("image_size");
  m.resnet_input_size = integer("resnet_input_size");
  out.build(/*image_only=*/true, {});
  out.weights_path_ = path;
  out.weights_sha256_ = io::sha256_file(path);
  out.name_ = path.string();
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& name : st.names()) tensors[name] = st.tensor(name);
  train::load_module_state(*out.image_, tensors, path.string());
  out.image_->eval();
  return out;
}

EvalModel EvalModel::random_init(const EvalModel& like, uint64_t seed, bool image_only) {
  MGCA_CHECK(image_only || like.has_text(),
             "{} is an image encoder alone: no whole model to initialise at random", like.name());
  EvalModel out;
  out.config_ = like.config_;
  out.random_seed_ = seed;
  torch::manual_seed(seed);
  out.build(image_only, like.vocab_);
  out.name_ = fmt::format("random init ({})", util::enum_name(out.config_.model.image_encoder));
  out.to(like.device_);
  return out;
}

EvalModel EvalModel::random_init(const train::Config& config, uint64_t seed,
                                 const ModelLoadOptions& options) {
  EvalModel out;
  out.config_ = config;
  out.random_seed_ = seed;
  torch::manual_seed(seed);
  out.build(/*image_only=*/false, find_vocab(config.text.vocab, options.vocab, fs::current_path()));
  out.name_ = fmt::format("random init ({})", util::enum_name(config.model.image_encoder));
  return out;
}

void EvalModel::to(torch::Device device) {
  device_ = device;
  module()->to(device);
}

torch::Tensor EvalModel::image_features(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  return image_->forward(images.to(device_)).global.to(torch::kFloat32);
}

int64_t EvalModel::feature_dim() const { return image_->global_dim(); }

torch::Tensor EvalModel::image_embeddings(const torch::Tensor& images) {
  MGCA_CHECK(has_text(), "{} is an image encoder alone: no projected embeddings", name_);
  torch::NoGradGuard no_grad;
  const auto x = images.to(device_);
  if (auto* mgca = dynamic_cast<model::MgcaModelImpl*>(full_.get())) {
    return l2_normalize(mgca->image_global_head->forward(mgca->image->forward(x).global));
  }
  auto* convirt = dynamic_cast<model::ConvirtModelImpl*>(full_.get());
  return l2_normalize(convirt->image_head->forward(convirt->image->forward(x).global));
}

torch::Tensor EvalModel::report_embeddings(const torch::Tensor& input_ids,
                                           const torch::Tensor& attention_mask) {
  MGCA_CHECK(has_text(), "{} is an image encoder alone: no report embeddings", name_);
  torch::NoGradGuard no_grad;
  const auto ids = input_ids.to(device_);
  const auto mask = attention_mask.to(device_);
  if (auto* mgca = dynamic_cast<model::MgcaModelImpl*>(full_.get())) {
    // MgcaModelImpl::forward's text side: the [CLS] word after subword aggregation.
    const auto txt = mgca->text->forward(ids, mask);
    const auto words = model::aggregate_words(txt.hidden, ids, txt.cls_attention,
                                              mgca->vocabulary(), mgca->config().words);
    return l2_normalize(mgca->text_global_head->forward(words.report_feat));
  }
  auto* convirt = dynamic_cast<model::ConvirtModelImpl*>(full_.get());
  return l2_normalize(convirt->text_head->forward(convirt->encode_text(ids, mask)));
}

int64_t EvalModel::embed_dim() const {
  MGCA_CHECK(has_text(), "{} is an image encoder alone: no embeddings", name_);
  return config_.model.embed_dim;
}

std::pair<torch::Tensor, torch::Tensor> EvalModel::tokenize(const std::vector<std::string>& reports) const {
  MGCA_CHECK(tokenizer_ != nullptr, "{} has no text encoder", name_);
  const int64_t length = config_.text.max_length;
  const auto n = static_cast<int64_t>(reports.size());
  auto ids = torch::empty({n, length}, torch::kInt64);
  auto mask = torch::empty({n, length}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    std::string text = reports[i];
    for (char& c : text) {
      if (c == '\n') c = ' ';
    }
    const auto enc = tokenizer_->encode(text, length);
    std::copy(enc.input_ids.begin(), enc.input_ids.end(), ids[i].data_ptr<int64_t>());
    std::copy(enc.attention_mask.begin(), enc.attention_mask.end(), mask[i].data_ptr<int64_t>());
  }
  return {ids, mask};
}

void save_image_encoder(const EvalModel& model, const fs::path& path) {
  train::write_image_encoder(path, train::module_state(*model.image_encoder()), model.config());
}

}  // namespace mgca::eval
