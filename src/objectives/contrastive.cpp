// ITA and ConVIRT: contrastive losses with global negatives (SPEC §2.1, §2.5).
#include <torch/torch.h>

#include <limits>

#include "internal.h"
#include "mgca/comm/differentiable.h"
#include "mgca/objectives/objectives.h"

namespace mgca::objectives {
namespace {

namespace F = torch::nn::functional;

// Top-1 and top-5 accuracy (%) of local rows `logits` [b, N] against
// `targets`; NaN for k > N.
std::pair<torch::Tensor, torch::Tensor> top1_top5(const torch::Tensor& logits,
                                                  const torch::Tensor& targets) {
  torch::NoGradGuard no_grad;
  const int64_t n = logits.size(1);
  const int64_t k = std::min<int64_t>(5, n);
  auto pred = std::get<1>(logits.topk(k, 1, /*largest=*/true, /*sorted=*/true));  // [b, k]
  auto hits = pred.eq(targets.unsqueeze(1));
  auto acc1 = hits.select(1, 0).to(torch::kFloat).mean() * 100.0;
  auto acc5 = n >= 5 ? hits.any(1).to(torch::kFloat).mean() * 100.0
                     : torch::full({}, std::numeric_limits<float>::quiet_NaN(),
                                   logits.options().dtype(torch::kFloat));
  return {acc1, acc5};
}

// Both directions of the contrastive loss at temperature `tau` over local rows
// × gathered columns; `loss` is left for the caller to combine.
ItaResult contrastive(const torch::Tensor& img, const torch::Tensor& txt, double tau,
                      const std::shared_ptr<comm::Communicator>& comm, const char* fn) {
  detail::check_float(img, fn, "img", 2);
  detail::check_float(txt, fn, "txt", 2);
  detail::check_same_kind(img, "img", txt, "txt", fn);
  MGCA_CHECK(img.sizes() == txt.sizes(), "{}: img {} and txt {} must have the same shape [b, d]", fn,
             detail::shape(img), detail::shape(txt));
  MGCA_CHECK(img.size(0) > 0 && img.size(1) > 0, "{}: empty batch (img {})", fn, detail::shape(img));
  MGCA_CHECK(comm != nullptr, "{}: no communicator", fn);
  const int64_t b = img.size(0);
  const int64_t d = img.size(1);

  // One gather (and one reduce-scatter backward) for both modalities, in the
  // input dtype (bf16 moves half the bytes); the softmaxes run in >= float32.
  auto gathered = comm::all_gather_with_grad(torch::cat({img, txt}, 1), comm);  // [N, 2d]
  auto img_all = detail::upcast(gathered.narrow(1, 0, d));
  auto txt_all = detail::upcast(gathered.narrow(1, d, d));
  const int64_t offset = static_cast<int64_t>(comm->rank()) * b;
  auto targets = torch::arange(offset, offset + b, img.options().dtype(torch::kLong));

  // Scaling the b×d operand instead of the b×N product keeps one b×N tensor.
  auto z_i2t = torch::mm(detail::upcast(img) / tau, txt_all.t());  // [b, N]
  auto z_t2i = torch::mm(detail::upcast(txt) / tau, img_all.t());

  ItaResult r;
  r.loss_i2t = F::cross_entropy(z_i2t, targets);
  r.loss_t2i = F::cross_entropy(z_t2i, targets);
  std::tie(r.acc1, r.acc5) = top1_top5(z_i2t, targets);
  std::tie(r.acc1_t2i, r.acc5_t2i) = top1_top5(z_t2i, targets);
  return r;
}

}  // namespace

ItaResult instance_alignment(const torch::Tensor& img, const torch::Tensor& txt,
                             const ObjectiveOptions& opts,
                             const std::shared_ptr<comm::Communicator>& comm) {
  auto r = contrastive(img, txt, opts.ita_temperature, comm, "instance_alignment");
  r.loss = r.loss_i2t + r.loss_t2i;
  if (!opts.ita_sum_directions) r.loss = r.loss * 0.5;
  return r;
}

ItaResult convirt_loss(const torch::Tensor& img, const torch::Tensor& txt, const ObjectiveOptions& opts,
                       const std::shared_ptr<comm::Communicator>& comm) {
  auto r = contrastive(img, txt, opts.convirt_temperature, comm, "convirt_loss");
  r.loss = opts.convirt_lambda * r.loss_i2t + (1.0 - opts.convirt_lambda) * r.loss_t2i;
  return r;
}

}  // namespace mgca::objectives
