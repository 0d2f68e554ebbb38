// The models evaluation runs: a trained checkpoint, an exported image
// encoder, or a random initialisation of the same architecture.
//
// Sources:
//  * Checkpoint: a checkpoint folder (runs/NAME/checkpoints/step-N/), its
//    model.safetensors, or a run / checkpoints folder (the newest complete
//    checkpoint in it). The architecture comes from the resolved config of
//    the run — `config.toml` in the folder, else the model file's metadata
//    key `config` — parsed with train::parse_config; the whole model (MGCA or
//    ConVIRT) is rebuilt and loaded strictly (every tensor, every shape).
//    It serves the probe (image features), retrieval and zero-shot
//    (projected embeddings of both sides).
//  * Exported image encoder: a safetensors file holding the image encoder's
//    parameters and buffers under our names (those of MgcaModel's `image.*`
//    submodule without the prefix) and this metadata (all strings):
//        format             "mgca-image-encoder"
//        image_encoder      vit_b16 | vit_tiny | resnet50 | resnet50_tiny
//                           (model::ModelOptions::image_encoder)
//        image_size         crop size the encoder was trained at, e.g. "224"
//        resnet_input_size  ResNet input resize, e.g. "299"; "0" = none
//        config             optional: the resolved TOML of the run
//    save_image_encoder() writes exactly this; it serves the probe only.
//  * Random init: the same architecture built after torch::manual_seed(seed)
//    with the model code's own initialisation; always reported beside the
//    trained encoder.
//
// Everything here is local (no collectives): under mpirun every rank loads
// the same model. The model is put in eval mode (BatchNorm uses running
// statistics, dropout off) and run without gradients.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mgca/model/image_encoder.h"
#include "mgca/text/tokenizer.h"
#include "mgca/eval/preprocess.h"
#include "mgca/train/config.h"
#include "mgca/train/export.h"

namespace mgca::eval {

struct ModelLoadOptions {
  // The WordPiece vocabulary of a whole model; empty: the run config's
  // text.vocab (a path relative to where training ran), tried as given and
  // relative to the checkpoint's run folder.
  std::filesystem::path vocab;
};

class EvalModel {
 public:
  // Loaders (errors name the file and what is wrong with it).
  static EvalModel from_checkpoint(const std::filesystem::path& path, const ModelLoadOptions& options = {});
  static EvalModel from_exported_encoder(const std::filesystem::path& path);
  // A fresh model of `like`'s architecture, initialised after
  // torch::manual_seed(seed): the image encoder alone (`image_only`, what the
  // probe needs: the same weights whatever `like` came from) or the whole
  // model (`like` must have one).
  static EvalModel random_init(const EvalModel& like, uint64_t seed, bool image_only);
  // A fresh model straight from a training config (e.g. a job file).
  static EvalModel random_init(const train::Config& config, uint64_t seed,
                               const ModelLoadOptions& options = {});

  // The table row: the checkpoint/encoder path, or "random init (<arch>)".
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  const std::string& method() const { return method_; }  // mgca | convirt | image-encoder
  const model::ModelOptions& model_config() const { return config_.model; }
  const train::Config& config() const { return config_; }
  bool is_random() const { return random_seed_.has_value(); }
  std::optional<uint64_t> random_seed() const { return random_seed_; }
  const std::filesystem::path& weights_path() const { return weights_path_; }
  // SHA-256 of the weights file ("" for random init): the feature-cache key.
  const std::string& weights_sha256() const { return weights_sha256_; }
  // What identifies the model in a cache key: the weights' hash, or the
  // architecture and seed of a random init.
  std::string identity() const;

  void to(torch::Device device);
  torch::Device device() const { return device_; }

  // Image features for the linear probe: ViT final-norm [CLS] / ResNet
  // avgpool(layer4). images [b, 1|3, S, S] normalized (see preprocess_images);
  // returns [b, feature_dim()] float32 on the model's device.
  torch::Tensor image_features(const torch::Tensor& images);
  int64_t feature_dim() const;

  // Projected, L2-normalized global embeddings (MGCA: img_emb/report_emb,
  // ConVIRT: the 512-d head outputs). Only with a whole model (has_text()).
  bool has_text() const { return full_ != nullptr; }
  torch::Tensor image_embeddings(const torch::Tensor& images);
  torch::Tensor report_embeddings(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  int64_t embed_dim() const;
  // The tokenizer of a whole model (config.text), null otherwise.
  const text::Tokenizer* tokenizer() const { return tokenizer_.get(); }
  // Reports (stored form: sentences joined by '\n') → input_ids and
  // attention_mask [n, config.text.max_length] int64: the sentences joined by
  // spaces, as MGCA's pretraining dataset feeds them.
  std::pair<torch::Tensor, torch::Tensor> tokenize(const std::vector<std::string>& reports) const;

  // The image encoder module (e.g. for export or weight comparisons).
  std::shared_ptr<model::ImageEncoderImpl> image_encoder() const { return image_; }
  std::shared_ptr<torch::nn::Module> module() const;

 private:
  EvalModel() = default;
  void build(bool image_only, const std::filesystem::path& vocab);

  std::string name_, method_;
  train::Config config_;
  std::optional<uint64_t> random_seed_;
  std::filesystem::path weights_path_;
  std::string weights_sha256_;
  std::shared_ptr<model::ImageEncoderImpl> image_;
  std::shared_ptr<torch::nn::Module> full_;  // MgcaModelImpl or ConvirtModelImpl
  std::shared_ptr<text::Tokenizer> tokenizer_;
  std::filesystem::path vocab_;
  torch::Device device_ = torch::kCPU;
};

// Writes `model`'s image encoder with the metadata contract above
// (train::write_image_encoder).
void save_image_encoder(const EvalModel& model, const std::filesystem::path& path);

}  // namespace mgca::eval
