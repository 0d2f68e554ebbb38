// ITA and ConVIRT: contrastive losses with global (or per-rank) negatives (docs/contract.md §2.1, §2.5, §2.7).
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

#include "internal.h"
#include "mgca/comm/differentiable.h"
#include "mgca/objectives/objectives.h"
#include "mgca/util/nvtx.h"

namespace mgca::objectives {
namespace {

// Top-1 and top-5 accuracy (%) from `above` [b], how many of the N columns
// each row scores strictly above its target (ties count as hits). NaN for
// k > N.
std::pair<torch::Tensor, torch::Tensor> accuracy_from_counts(const torch::Tensor& above, int64_t n) {
  auto acc1 = above.eq(0).to(torch::kFloat).mean() * 100.0;
  auto acc5 = n >= 5 ? above.lt(5).to(torch::kFloat).mean() * 100.0
                     : torch::full({}, std::numeric_limits<float>::quiet_NaN(), above.options().dtype(torch::kFloat));
  return {acc1, acc5};
}

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
  return accuracy_from_counts(torch::cat(counts), n);
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

// Both directions at once, memory-flat in N (Inf-CL, arXiv 2410.17243): the
// columns are visited in tiles of `tile` columns at fixed boundaries k·tile;
// forward keeps an online log-sum-exp per row (running max and rescaled sum)
// and counts the columns above the target, backward recomputes each tile's
// softmax from the saved max and sum (not their log-sum-exp: z − lse would
// round at the logits' magnitude, z − max is exact as in the one-matrix
// path) and writes its gradient straight into the
// gathered tensor's gradient. Working memory: one b × tile float32 tile,
// whatever N; what still grows with N is the gathered [N, 2d] embeddings
// and their gradient, which the all-gather needs anyway. Tiles are float32
// (float64 for float64 input) whatever the input dtype; gradients come back
// in the input dtype. Same loss and gradients as LocalContrastiveCE up to
// float reassociation.
class TiledContrastiveCE : public torch::autograd::Function<TiledContrastiveCE> {
 public:
  // img, txt [b, d] local; gathered [N, 2d] = [img_all | txt_all]. Returns
  // {loss_i2t, loss_t2i, acc1, acc5, acc1_t2i, acc5_t2i}.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& img,
                                                const torch::Tensor& txt, const torch::Tensor& gathered,
                                                int64_t offset, double inv_tau, int64_t tile) {
    torch::NoGradGuard no_grad;
    const int64_t d = img.size(1);
    auto i2t = direction_forward(detail::upcast(img), gathered, d, offset, inv_tau, tile);
    auto t2i = direction_forward(detail::upcast(txt), gathered, 0, offset, inv_tau, tile);
    ctx->save_for_backward({img, txt, gathered, i2t.row_max, i2t.row_sum, t2i.row_max, t2i.row_sum});
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["inv_tau"] = inv_tau;
    ctx->saved_data["tile"] = tile;
    ctx->mark_non_differentiable({i2t.acc1, i2t.acc5, t2i.acc1, t2i.acc5});
    return {i2t.loss, t2i.loss, i2t.acc1, i2t.acc5, t2i.acc1, t2i.acc5};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    torch::NoGradGuard no_grad;
    auto saved = ctx->get_saved_variables();
    const auto& img = saved[0];
    const auto& txt = saved[1];
    const auto& gathered = saved[2];
    const int64_t offset = ctx->saved_data["offset"].toInt();
    const double inv_tau = ctx->saved_data["inv_tau"].toDouble();
    const int64_t tile = ctx->saved_data["tile"].toInt();
    const int64_t d = img.size(1);
    torch::Tensor grad_img, grad_txt, grad_gathered;
    if (grads[0].defined() || grads[1].defined()) grad_gathered = torch::zeros_like(gathered);
    if (grads[0].defined())
      grad_img = direction_backward(detail::upcast(img), gathered, d, saved[3], saved[4], grads[0], grad_gathered,
                                    offset, inv_tau, tile).to(img.scalar_type());
    if (grads[1].defined())
      grad_txt = direction_backward(detail::upcast(txt), gathered, 0, saved[5], saved[6], grads[1], grad_gathered,
                                    offset, inv_tau, tile).to(txt.scalar_type());
    return {grad_img, grad_txt, grad_gathered, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }

 private:
  struct Direction {
    torch::Tensor loss, row_max, row_sum, acc1, acc5;  // row_max, row_sum [b, 1]: Σ exp(z − row_max)
  };

  // Logits of local rows against gathered columns [begin, begin + len) of the
  // half starting at column `half` (0: images, d: reports), as forward and
  // backward both compute them (so both see the same values).
  static torch::Tensor tile_logits(const torch::Tensor& rows, const torch::Tensor& gathered, int64_t half,
                                   int64_t begin, int64_t len, double inv_tau) {
    const int64_t d = rows.size(1);
    auto cols = detail::upcast(gathered.narrow(0, begin, len).narrow(1, half, d));
    auto z = torch::mm(rows, cols.t());
    z.mul_(inv_tau);
    return z;
  }

  static Direction direction_forward(const torch::Tensor& rows, const torch::Tensor& gathered, int64_t half,
                                     int64_t offset, double inv_tau, int64_t tile) {
    const int64_t b = rows.size(0), n = gathered.size(0);
    // Target logits first, from the (at most two) tiles that hold columns
    // offset … offset + b − 1, so the counts below compare like with like.
    auto target = torch::empty({b, 1}, rows.options());
    for (int64_t begin = offset / tile * tile; begin < offset + b; begin += tile) {
      const int64_t len = std::min(tile, n - begin);
      const int64_t lo = std::max(offset, begin), hi = std::min(offset + b, begin + len);
      auto z = tile_logits(rows, gathered, half, begin, len, inv_tau);
      target.narrow(0, lo - offset, hi - lo)
          .copy_(z.narrow(0, lo - offset, hi - lo).narrow(1, lo - begin, hi - lo).diagonal().unsqueeze(1));
    }
    auto row_max = torch::full({b, 1}, -std::numeric_limits<double>::infinity(), rows.options());
    auto row_sum = torch::zeros({b, 1}, rows.options());
    auto above = torch::zeros({b}, rows.options().dtype(torch::kLong));
    for (int64_t begin = 0; begin < n; begin += tile) {
      const int64_t len = std::min(tile, n - begin);
      auto z = tile_logits(rows, gathered, half, begin, len, inv_tau);
      above.add_(z.gt(target).sum(1));
      auto new_max = torch::maximum(row_max, std::get<0>(z.max(1, /*keepdim=*/true)));
      row_sum.mul_((row_max - new_max).exp_()).add_(z.sub_(new_max).exp_().sum(1, /*keepdim=*/true));
      row_max = new_max;
    }
    Direction r;
    r.loss = (row_sum.log() + row_max - target).mean();
    r.row_max = row_max;
    r.row_sum = row_sum;
    std::tie(r.acc1, r.acc5) = accuracy_from_counts(above, n);
    return r;
  }

  // Accumulates the gathered columns' gradient into grad_gathered's half
  // and returns the local rows' gradient (in the tiles' dtype).
  static torch::Tensor direction_backward(const torch::Tensor& rows, const torch::Tensor& gathered, int64_t half,
                                          const torch::Tensor& row_max, const torch::Tensor& row_sum,
                                          const torch::Tensor& grad_loss,
                                          torch::Tensor& grad_gathered, int64_t offset, double inv_tau,
                                          int64_t tile) {
    const int64_t b = rows.size(0), d = rows.size(1), n = gathered.size(0);
    auto scale = grad_loss.to(rows.scalar_type()) * (inv_tau / static_cast<double>(b));
    auto grad_rows = torch::zeros_like(rows);
    for (int64_t begin = 0; begin < n; begin += tile) {
      const int64_t len = std::min(tile, n - begin);
      auto p = tile_logits(rows, gathered, half, begin, len, inv_tau).sub_(row_max).exp_().div_(row_sum);
      const int64_t lo = std::max(offset, begin), hi = std::min(offset + b, begin + len);
      if (lo < hi) p.narrow(0, lo - offset, hi - lo).narrow(1, lo - begin, hi - lo).diagonal().sub_(1.0);
      p.mul_(scale);
      auto cols = detail::upcast(gathered.narrow(0, begin, len).narrow(1, half, d));
      grad_rows.add_(torch::mm(p, cols));
      grad_gathered.narrow(0, begin, len).narrow(1, half, d).copy_(torch::mm(p.t(), rows));
    }
    return grad_rows;
  }
};

// An ItaResult from each direction's (loss, acc@1, acc@5); `loss` is left
// for the caller to combine.
ItaResult ita_directions(torch::Tensor loss_i2t, torch::Tensor acc1, torch::Tensor acc5, torch::Tensor loss_t2i,
                         torch::Tensor acc1_t2i, torch::Tensor acc5_t2i) {
  ItaResult r;
  r.loss_i2t = std::move(loss_i2t);
  r.acc1 = std::move(acc1);
  r.acc5 = std::move(acc5);
  r.loss_t2i = std::move(loss_t2i);
  r.acc1_t2i = std::move(acc1_t2i);
  r.acc5_t2i = std::move(acc5_t2i);
  return r;
}

// Both directions of the contrastive loss at temperature `tau` over local rows
// × gathered columns; `loss` is left for the caller to combine.
ItaResult contrastive(const torch::Tensor& img, const torch::Tensor& txt, double tau, int64_t ita_tile,
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
  MGCA_CHECK(ita_tile >= 1, "{}: ita_tile must be >= 1, got {}", fn, ita_tile);
  const int64_t b = img.size(0);
  const int64_t d = img.size(1);

  // One gather (and one reduce-scatter backward) for both modalities, in the
  // input dtype (bf16 moves half the bytes); the softmaxes run in >= float32.
  torch::Tensor gathered;
  {
    util::ScopedRange range("ita_gather");
    gathered = comm::all_gather_with_grad(torch::cat({img, txt}, 1), comm);  // [N, 2d]
  }
  const int64_t offset = static_cast<int64_t>(comm->rank()) * b;
  if (gathered.size(0) > ita_tile) {
    auto out = TiledContrastiveCE::apply(img, txt, gathered, offset, 1.0 / tau, ita_tile);
    return ita_directions(out[0], out[2], out[3], out[1], out[4], out[5]);
  }
  // split (not two narrows): its backward assembles one [N, 2d] gradient
  // instead of zero-filling one per view and adding them.
  auto halves = gathered.split(d, 1);
  auto img_all = detail::upcast(halves[0]);
  auto txt_all = detail::upcast(halves[1]);
  auto i2t = LocalContrastiveCE::apply(detail::upcast(img), txt_all, offset, 1.0 / tau);
  auto t2i = LocalContrastiveCE::apply(detail::upcast(txt), img_all, offset, 1.0 / tau);
  return ita_directions(i2t[0], i2t[1], i2t[2], t2i[0], t2i[1], t2i[2]);
}

// Local negatives: the loss over this rank's rows alone is the
// single-process loss of its b rows (no gather, no reduce-scatter).
const std::shared_ptr<comm::Communicator>& negatives_comm(const ObjectiveOptions& opts,
                                                          const std::shared_ptr<comm::Communicator>& comm) {
  static const std::shared_ptr<comm::Communicator> one = comm::Communicator::single();
  return opts.negatives == Scope::Local && comm != nullptr ? one : comm;
}

}  // namespace

ItaResult instance_alignment(const torch::Tensor& img, const torch::Tensor& txt,
                             const ObjectiveOptions& opts,
                             const std::shared_ptr<comm::Communicator>& comm) {
  if (opts.replicated && comm != nullptr) {
    return instance_alignment(comm::all_gather_replicated(img, comm), comm::all_gather_replicated(txt, comm),
                              detail::unreplicated(opts), comm::Communicator::single());
  }
  auto r = contrastive(img, txt, opts.ita_temperature, opts.ita_tile, negatives_comm(opts, comm),
                       "instance_alignment");
  r.loss = r.loss_i2t + r.loss_t2i;
  if (!opts.ita_sum_directions) r.loss = r.loss * 0.5;
  return r;
}

ItaResult convirt_loss(const torch::Tensor& img, const torch::Tensor& txt, const ObjectiveOptions& opts,
                       const std::shared_ptr<comm::Communicator>& comm) {
  if (opts.replicated && comm != nullptr) {
    return convirt_loss(comm::all_gather_replicated(img, comm), comm::all_gather_replicated(txt, comm),
                        detail::unreplicated(opts), comm::Communicator::single());
  }
  auto r = contrastive(img, txt, opts.convirt_temperature, opts.ita_tile, negatives_comm(opts, comm), "convirt_loss");
  r.loss = opts.convirt_lambda * r.loss_i2t + (1.0 - opts.convirt_lambda) * r.loss_t2i;
  return r;
}

}  // namespace mgca::objectives
