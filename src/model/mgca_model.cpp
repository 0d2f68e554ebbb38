#include "mgca/model/mgca_model.h"

#include <torch/torch.h>

#include "mgca/model/resnet.h"
#include "mgca/model/vit.h"
#include "mgca/util/error.h"

namespace mgca::model {
namespace {

torch::Tensor l2_normalize(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

}  // namespace

MgcaModelImpl::MgcaModelImpl(const MgcaModelConfig& config, WordVocabulary vocab)
    : config_(config), vocab_(std::move(vocab)) {
  MGCA_CHECK(static_cast<int64_t>(vocab_.continuation.size()) == config.bert.vocab_size,
             "MGCA model: the tokenizer's vocabulary has {} entries, BERT expects {}", vocab_.continuation.size(),
             config.bert.vocab_size);
  if (config.backbone == ImageBackbone::ViT) {
    image = register_module("image", std::make_shared<ViTImpl>(config.vit));
  } else {
    image = register_module("image", std::make_shared<ResNetImpl>(config.resnet));
  }
  text = register_module("text", Bert(config.bert));
  const int64_t hidden = config.head_hidden, d = config.embed_dim;
  image_global_head = register_module("image_global_head", ProjectionHead(image->global_dim(), hidden, d));
  image_local_head = register_module("image_local_head", LocalHead(image->local_dim(), hidden, d));
  text_global_head = register_module("text_global_head", ProjectionHead(config.bert.hidden, hidden, d));
  text_local_head = register_module("text_local_head", LocalHead(config.bert.hidden, hidden, d));
  prototypes = register_module("prototypes", Prototypes(config.num_prototypes, d));
  // The ViT's final LayerNorm feeds only the heads' Linear–BatchNorm: its bias
  // adds the same vector to every row, which BatchNorm removes, so its true
  // gradient is exactly zero; Adam would turn the rounding residue into
  // lr-sized steps. It keeps its (pretrained) value.
  if (config.backbone == ImageBackbone::ViT) {
    image->named_parameters()["norm.bias"].requires_grad_(false);
  }
}

ImageFeatures MgcaModelImpl::encode_image(const torch::Tensor& images) { return image->forward(images); }

TextFeatures MgcaModelImpl::encode_text(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  return text->forward(input_ids, attention_mask);
}

MgcaOutputs MgcaModelImpl::forward(const torch::Tensor& images, const torch::Tensor& input_ids,
                                   const torch::Tensor& attention_mask) {
  MGCA_CHECK(images.size(0) == input_ids.size(0), "MGCA model: {} images but {} reports", images.size(0),
             input_ids.size(0));
  const auto img = image->forward(images);
  const auto txt = text->forward(input_ids, attention_mask);
  const auto words = aggregate_words(txt.hidden, input_ids, txt.cls_attention, vocab_, config_.words);

  MgcaOutputs out;
  out.img_emb = l2_normalize(image_global_head->forward(img.global));
  out.patch_emb = l2_normalize(image_local_head->forward(img.local));
  out.report_emb = l2_normalize(text_global_head->forward(words.report_feat));
  out.word_emb = l2_normalize(text_local_head->forward(words.word_feat));
  out.word_weight = words.word_weight;
  out.word_mask = words.word_mask;
  out.patch_weight_from_attention = image->has_patch_attention();
  if (img.patch_attention.defined()) {
    out.patch_weight = img.patch_attention;
  } else {
    const int64_t p = img.local.size(1);
    out.patch_weight = torch::full({img.local.size(0), p}, 1.0 / static_cast<double>(p), img.local.options());
  }
  return out;
}

void MgcaModelImpl::set_communicator(const std::shared_ptr<comm::Communicator>& comm) {
  const auto c = config_.sync_batchnorm ? comm : nullptr;
  image_global_head->set_communicator(c);
  image_local_head->set_communicator(c);
  text_global_head->set_communicator(c);
  text_local_head->set_communicator(c);
  if (auto* resnet = dynamic_cast<ResNetImpl*>(image.get())) resnet->set_communicator(c);
}

ConvirtModelImpl::ConvirtModelImpl(const ConvirtModelConfig& config) : config_(config) {
  image = register_module("image", std::make_shared<ResNetImpl>(config.resnet));
  text = register_module("text", Bert(config.bert));
  image_head = register_module("image_head",
                               MlpHead(image->global_dim(), config.image_head_hidden, config.embed_dim));
  text_head =
      register_module("text_head", MlpHead(config.bert.hidden, config.text_head_hidden, config.embed_dim));
}

torch::Tensor ConvirtModelImpl::encode_text(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  const auto hidden = text->forward(input_ids, attention_mask).hidden;
  const auto pad = attention_mask.eq(0).unsqueeze(-1).to(hidden.device());
  return hidden.masked_fill(pad, -std::numeric_limits<double>::infinity()).amax(1);
}

ConvirtOutputs ConvirtModelImpl::forward(const torch::Tensor& images, const torch::Tensor& input_ids,
                                         const torch::Tensor& attention_mask) {
  MGCA_CHECK(images.size(0) == input_ids.size(0), "ConVIRT model: {} images but {} reports", images.size(0),
             input_ids.size(0));
  ConvirtOutputs out;
  out.img_emb = l2_normalize(image_head->forward(image->forward(images).global));
  out.text_emb = l2_normalize(text_head->forward(encode_text(input_ids, attention_mask)));
  return out;
}

void ConvirtModelImpl::set_communicator(const std::shared_ptr<comm::Communicator>& comm) {
  if (auto* resnet = dynamic_cast<ResNetImpl*>(image.get())) resnet->set_communicator(config_.sync_batchnorm ? comm : nullptr);
}

}  // namespace mgca::model
