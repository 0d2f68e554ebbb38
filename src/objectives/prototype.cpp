// CPA with SwAV's distributed Sinkhorn (docs/contract.md §2.3) and the MGCA total (§2.4).
#include <torch/torch.h>

#include <limits>

#include "internal.h"
#include "mgca/comm/differentiable.h"
#include "mgca/comm/exact_grad.h"
#include "mgca/objectives/objectives.h"
#include "mgca/util/nvtx.h"

namespace mgca::objectives {

torch::Tensor sinkhorn(const torch::Tensor& scores, double epsilon, int iterations,
                       const std::shared_ptr<comm::Communicator>& comm) {
  util::ScopedRange range("sinkhorn");
  const char* fn = "sinkhorn";
  MGCA_CHECK(scores.defined() && (scores.dim() == 2 || scores.dim() == 3),
             "{}: scores must be [b, K] or [G, b, K], got {}", fn, detail::shape(scores));
  MGCA_CHECK(scores.is_floating_point(), "{}: scores must be floating point, got {}", fn,
             c10::toString(scores.scalar_type()));
  MGCA_CHECK(epsilon > 0, "{}: epsilon must be > 0, got {}", fn, epsilon);
  MGCA_CHECK(iterations >= 1, "{}: iterations must be >= 1, got {}", fn, iterations);
  MGCA_CHECK(comm != nullptr, "{}: no communicator", fn);
  torch::NoGradGuard no_grad;
  detail::FullPrecision full_precision;

  const bool single = scores.dim() == 2;
  const auto dtype = scores.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  // Codes layout [G, b, K]: SwAV's Q (K × b) transposed. "Rows" of Q
  // (prototypes) are reduced over dim 1 and all-reduced, "columns" (samples)
  // over dim 2, locally.
  auto q = (single ? scores.unsqueeze(0) : scores).detach().to(dtype).div(epsilon);
  // Each prototype's global max subtracted: exp never overflows and no
  // prototype row underflows to all zeros. A per-row shift is a per-row
  // scale of Q, which the first row normalization cancels.
  auto row_max = std::get<0>(q.max(1));  // [G, K]
  comm->all_reduce(row_max, comm::ReduceOp::Max);
  q.sub_(row_max.unsqueeze(1)).exp_();
  // Guards a zero sum (only reachable with unnormalized scores spanning more
  // than ~87·ε): the entries stay 0 instead of becoming NaN.
  const double tiny = dtype == torch::kDouble ? std::numeric_limits<double>::min()
                                              : static_cast<double>(std::numeric_limits<float>::min());
  for (int it = 0; it < iterations; ++it) {
    auto row_sum = q.sum(1);  // [G, K]
    comm->all_reduce(row_sum, comm::ReduceOp::Sum);
    q.div_(row_sum.clamp_min_(tiny).unsqueeze(1));
    q.div_(q.sum(2, /*keepdim=*/true).clamp_min_(tiny));
  }
  return single ? q.squeeze(0) : q;
}

CpaResult prototype_alignment(const torch::Tensor& img, const torch::Tensor& txt,
                              const torch::Tensor& prototypes, const ObjectiveOptions& opts,
                              const std::shared_ptr<comm::Communicator>& comm) {
  if (opts.replicated && comm != nullptr) {
    return prototype_alignment(comm::all_gather_replicated(img, comm), comm::all_gather_replicated(txt, comm),
                               comm::replicated_parameter(prototypes, *comm), detail::unreplicated(opts),
                               comm::Communicator::single());
  }
  const char* fn = "prototype_alignment";
  detail::FullPrecision full_precision;
  detail::check_float(img, fn, "img", 2);
  detail::check_float(txt, fn, "txt", 2);
  detail::check_float(prototypes, fn, "prototypes", 2);
  detail::check_same_kind(img, "img", txt, "txt", fn);
  detail::check_same_kind(img, "img", prototypes, "prototypes", fn);
  MGCA_CHECK(img.sizes() == txt.sizes() && img.size(0) > 0,
             "{}: img {} and txt {} must have the same non-empty shape [b, d]", fn, detail::shape(img),
             detail::shape(txt));
  MGCA_CHECK(prototypes.size(1) == img.size(1), "{}: prototypes {} must be [K, {}] to match img {}", fn,
             detail::shape(prototypes), img.size(1), detail::shape(img));
  MGCA_CHECK(prototypes.size(0) == opts.num_prototypes,
             "{}: prototypes {} hold {} rows but model.num_prototypes is {}", fn,
             detail::shape(prototypes), prototypes.size(0), opts.num_prototypes);
  MGCA_CHECK(opts.proto_temperature > 0, "{}: proto_temperature must be > 0, got {}", fn,
             opts.proto_temperature);

  auto C = detail::upcast(prototypes);
  auto s_img = torch::mm(detail::upcast(img), C.t());  // [b, K]
  auto s_txt = torch::mm(detail::upcast(txt), C.t());
  // Both modalities in one Sinkhorn call: the same collectives serve both.
  // Codes in float32 (float64 for float64 input), as Sinkhorn returns them.
  // Local Sinkhorn: the official per-GPU codes, normalized over this rank's rows alone.
  const auto sinkhorn_comm = opts.sinkhorn == Scope::Local && comm ? comm::Communicator::single() : comm;
  auto codes = sinkhorn(torch::stack({s_img.detach(), s_txt.detach()}), opts.sinkhorn_epsilon,
                        static_cast<int>(opts.sinkhorn_iterations), sinkhorn_comm);
  auto q_img = codes.select(0, 0);
  auto q_txt = codes.select(0, 1);
  auto logp_img = torch::log_softmax(s_img / opts.proto_temperature, 1);
  auto logp_txt = torch::log_softmax(s_txt / opts.proto_temperature, 1);

  CpaResult r;
  r.loss_i2t = -(q_img * logp_txt).sum(1).mean();
  r.loss_t2i = -(q_txt * logp_img).sum(1).mean();
  r.loss = (r.loss_i2t + r.loss_t2i) * 0.5;
  r.codes_img = q_img;
  r.codes_report = q_txt;
  return r;
}

void normalize_prototypes_(torch::Tensor& weight) {
  detail::check_float(weight, "normalize_prototypes_", "weight", 2);
  torch::NoGradGuard no_grad;
  // F.normalize's form: x / max(‖x‖, 1e-12).
  weight.div_(weight.norm(2, 1, /*keepdim=*/true).clamp_min(1e-12));
}

MgcaObjectiveResult mgca_objective(const MgcaObjectiveInputs& in, const ObjectiveOptions& opts,
                                   const std::shared_ptr<comm::Communicator>& comm, CtaTrace* trace) {
  MGCA_CHECK(in.img_emb.defined() && in.patch_emb.defined() && in.img_emb.dim() >= 1 &&
                 in.patch_emb.dim() >= 1 && in.patch_emb.size(0) == in.img_emb.size(0),
             "mgca_objective: patch_emb {} and img_emb {} disagree on the batch size",
             detail::shape(in.patch_emb), detail::shape(in.img_emb));
  MgcaObjectiveResult r;
  r.ita = instance_alignment(in.img_emb, in.report_emb, opts, comm);
  r.cta = token_alignment(in.word_emb, in.word_weight, in.word_mask, in.patch_emb, in.patch_weight, opts,
                          trace);
  r.cpa = prototype_alignment(in.img_emb, in.report_emb, in.prototypes, opts, comm);
  auto cta = r.cta.loss;
  if (opts.replicated && comm != nullptr && comm->size() > 1) {
    // The same value (its mean over ranks stays the global one), the gradient
    // times 1/W = b/N: the per-sample CTA sees b rows, ITA and CPA all N.
    const auto value = cta.detach();
    cta = value + (cta - value) * (1.0 / comm->size());
  }
  r.loss = opts.lambda_ita * r.ita.loss + opts.lambda_cta * cta + opts.lambda_cpa * r.cpa.loss;
  return r;
}

}  // namespace mgca::objectives
