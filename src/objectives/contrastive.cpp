// ITA and ConVIRT: contrastive losses with global negatives (docs/contract.md §2.1, §2.5).
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "internal.h"
#include "mgca/comm/differentiable.h"
#include "mgca/objectives/objectives.h"

namespace mgca::objectives {
namespace {

// Top-1 and top-5 accuracy (%) of local rows `logits` [b, N] whose target
// logits are `target` [b, 1]: a row hits top-k when fewer than k entries are
// strictly greater than its target's (ties count as hits; no sort). NaN for
// k > N.
std::pair<torch::Tensor, torch::Tensor> top1_top5(const torch::Tensor& logits, const torch::Tensor& target) {
  torch::NoGradGuard no_grad;
  // In row blocks of at most 2^20 entries: the comparison and its integer
  // sum (bool → int64) would otherwise add 9 bytes per logit to the peak.
  const int64_t b = logits.size(0), n = logits.size(1);
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(n, 1));
  std::vector<torch::Tensor> counts;
  for (int64_t r = 0; r < b; r += block) {
    const int64_t m = std::min(block, b - r);
    counts.push_back(logits.narrow(0, r, m).gt(target.narrow(0, r, m)).sum(1));
  }
  auto above = torch::cat(counts);  // [b]
  auto acc1 = above.eq(0).to(torch::kFloat).mean() * 100.0;
  auto acc5 = logits.size(1) >= 5 ? above.lt(5).to(torch::kFloat).mean() * 100.0
                                  : torch::full({}, std::numeric_limits<float>::quiet_NaN(),
                                                logits.options().dtype(torch::kFloat));
  return {acc1, acc5};
}

// Cross-entropy of local rows against gathered columns with targets at
// offset + i, fused: forward turns the logits z = (rows·colsᵀ)/τ [b, N] in
// place into their softmax P and keeps it; backward turns P in place into
// the gradient (P − one-hot)·g/(b·τ) and multiplies it out. Against
// mm + F::cross_entropy this allocates one b×N tensor per direction instead
// of four (logits, log-softmax, nll gradient, log-softmax gradient).
// Once-differentiable: a second backward through the same graph
// (retain_graph) is an error.
class LocalContrastiveCE : public torch::autograd::Function<LocalContrastiveCE> {
 public:
  // Returns {loss (mean over rows), top-1 %, top-5 %}; accuracies carry no grad.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& rows,
                                                const torch::Tensor& cols, int64_t offset, double inv_tau) {
    const int64_t b = rows.size(0);
    auto z = torch::mm(rows, cols.t());
    z.mul_(inv_tau);
    auto targets = torch::arange(offset, offset + b, rows.options().dtype(torch::kLong)).unsqueeze(1);
    auto target_logit = z.gather(1, targets);  // [b, 1]
    auto [acc1, acc5] = top1_top5(z, target_logit);
    auto row_max = std::get<0>(z.max(1, /*keepdim=*/true));
    z.sub_(row_max).exp_();
    auto sum = z.sum(1, /*keepdim=*/true);
    z.div_(sum);  // softmax
    auto loss = (sum.log() + row_max - target_logit).mean();
    ctx->save_for_backward({rows, cols});
    ctx->saved_data["p"] = z;
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["inv_tau"] = inv_tau;
    ctx->mark_non_differentiable({acc1, acc5});
    return {loss, acc1, acc5};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto it = ctx->saved_data.find("p");
    MGCA_CHECK(it != ctx->saved_data.end(),
               "contrastive loss: backward ran twice through the same graph (retain_graph is not supported)");
    auto z = it->second.toTensor();
    ctx->saved_data.erase(it);  // P is ours alone now: it becomes the gradient
    auto saved = ctx->get_saved_variables();
    const auto& rows = saved[0];
    const auto& cols = saved[1];
    if (!grads[0].defined()) return {torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
    const int64_t b = rows.size(0);
    const int64_t offset = ctx->saved_data["offset"].toInt();
    const double inv_tau = ctx->saved_data["inv_tau"].toDouble();
    auto idx = torch::arange(offset, offset + b, rows.options().dtype(torch::kLong)).unsqueeze(1);
    z.scatter_(1, idx, z.gather(1, idx) - 1.0);  // − one-hot
    z.mul_(grads[0].to(z.scalar_type()) * (inv_tau / static_cast<double>(b)));
    return {torch::mm(z, cols), torch::mm(z.t(), rows), torch::Tensor(), torch::Tensor()};
  }
};

// Both directions of the contrastive loss at temperature `tau` over local rows
// × gathered columns; `loss` is left for the caller to combine.
ItaResult contrastive(const torch::Tensor& img, const torch::Tensor& txt, double tau,
                      const std::shared_ptr<comm::Communicator>& comm, const char* fn) {
  detail::FullPrecision full_precision;
  detail::check_float(img, fn, "img", 2);
  detail::check_float(txt, fn, "txt", 2);
  detail::check_same_kind(img, "img", txt, "txt", fn);
  MGCA_CHECK(img.sizes() == txt.sizes(), "{}: img {} and txt {} must have the same shape [b, d]", fn,
             detail::shape(img), detail::shape(txt));
  MGCA_CHECK(img.size(0) > 0 && img.size(1) > 0, "{}: empty batch (img {})", fn, detail::shape(img));
  MGCA_CHECK(comm != nullptr, "{}: no communicator", fn);
  MGCA_CHECK(tau > 0, "{}: temperature must be > 0, got {}", fn, tau);
  const int64_t b = img.size(0);
  const int64_t d = img.size(1);

  // One gather (and one reduce-scatter backward) for both modalities, in the
  // input dtype (bf16 moves half the bytes); the softmaxes run in >= float32.
  auto gathered = comm::all_gather_with_grad(torch::cat({img, txt}, 1), comm);  // [N, 2d]
  // split (not two narrows): its backward assembles one [N, 2d] gradient
  // instead of zero-filling one per view and adding them.
  auto halves = gathered.split(d, 1);
  auto img_all = detail::upcast(halves[0]);
  auto txt_all = detail::upcast(halves[1]);
  const int64_t offset = static_cast<int64_t>(comm->rank()) * b;

  ItaResult r;
  auto i2t = LocalContrastiveCE::apply(detail::upcast(img), txt_all, offset, 1.0 / tau);
  auto t2i = LocalContrastiveCE::apply(detail::upcast(txt), img_all, offset, 1.0 / tau);
  r.loss_i2t = i2t[0];
  r.acc1 = i2t[1];
  r.acc5 = i2t[2];
  r.loss_t2i = t2i[0];
  r.acc1_t2i = t2i[1];
  r.acc5_t2i = t2i[2];
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
