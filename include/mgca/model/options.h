// The [model] table of a job: which encoders, their shapes and weights (no
// torch). train::Config holds one; train/model_builder maps it to the
// encoders' shape structs (model/config.h). visit_model_options() binds each
// job-file key to its field with its meaning and allowed range, the one list
// the job parser, to_toml and the key reference walk.
#pragma once

#include <cstdint>
#include <string>

#include "mgca/model/config.h"
#include "mgca/util/option_types.h"

namespace mgca::model {

struct ModelOptions {
  ImageEncoderKind image_encoder = ImageEncoderKind::VitB16;
  TextEncoderKind text_encoder = TextEncoderKind::Bert;
  int64_t text_layers = 6;                // BERT layers built and run (MGCA: first 6 of 12)
  bool freeze_text_embeddings = false;    // ConVIRT: true
  int64_t freeze_text_layers = 0;         // first n BERT layers get no gradient (ConVIRT: 6)
  int64_t image_size = 224;               // crop size given to the image encoder
  int64_t resnet_input_size = 299;        // ResNet input resized to this (MGCA: 299); 0 = no resize
  int64_t embed_dim = 128;                // d of the global/local embeddings (ConVIRT: 512)
  int64_t head_hidden = 2048;             // hidden width of MGCA's heads / ConVIRT's image head
  int64_t text_head_hidden = 768;         // hidden width of ConVIRT's text head
  int64_t num_prototypes = 500;           // K of CPA
  BatchNormMode batchnorm = BatchNormMode::Sync;
  double dropout = 0.1;                   // BERT hidden and attention dropout
  std::string image_weights;              // safetensors with timm/torchvision names; "" = random init
  std::string text_weights;               // safetensors with Hugging Face BERT names; "" = random init
  bool partial_load = false;              // allow missing/unexpected tensors in the weight files
};

// Every key of [model], in the order of the resolved TOML:
// f(key, field&, meaning, util::Range). `Options` is ModelOptions, const or not.
template <typename Options, typename F>
void visit_model_options(Options& m, F&& f) {
  using util::Range;
  f("model.image_encoder", m.image_encoder, "image backbone (`*_tiny`: small shapes for CPU and CI)", Range{});
  f("model.text_encoder", m.text_encoder, "text backbone: Bio_ClinicalBERT shapes or small ones", Range{});
  f("model.text_layers", m.text_layers, "BERT layers built and run (MGCA: the first 6 of 12)", Range::at_least(1));
  f("model.freeze_text_embeddings", m.freeze_text_embeddings, "no gradient for the BERT embeddings (ConVIRT)",
    Range{});
  f("model.freeze_text_layers", m.freeze_text_layers, "the first n BERT layers get no gradient (ConVIRT: 6)",
    Range::at_least(0));
  f("model.image_size", m.image_size, "crop size given to the image encoder (ViT: its image size)",
    Range::at_least(8));
  f("model.resnet_input_size", m.resnet_input_size,
    "ResNet input resized to this square size (MGCA: 299); 0 = no resize", Range::at_least(0));
  f("model.embed_dim", m.embed_dim, "embedding width d (MGCA 128, ConVIRT 512)", Range::at_least(1));
  f("model.head_hidden", m.head_hidden, "hidden width of MGCA's heads and of ConVIRT's image head",
    Range::at_least(1));
  f("model.text_head_hidden", m.text_head_hidden, "hidden width of ConVIRT's text head", Range::at_least(1));
  f("model.num_prototypes", m.num_prototypes, "prototypes K of CPA", Range::at_least(1));
  f("model.batchnorm", m.batchnorm, "BatchNorm statistics over the global batch or each rank's own", Range{});
  f("model.dropout", m.dropout, "BERT hidden and attention dropout", Range::half_open(0, 1));
  f("model.image_weights", m.image_weights, "pretrained image weights (safetensors, timm/torchvision names); \"\" = random",
    Range{});
  f("model.text_weights", m.text_weights, "pretrained BERT weights (safetensors, Hugging Face names); \"\" = random",
    Range{});
  f("model.partial_load", m.partial_load, "allow missing or unexpected tensors in the weight files", Range{});
}

}  // namespace mgca::model
