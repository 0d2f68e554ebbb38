#include "mgca/comm/sync_batchnorm.h"

#include <torch/torch.h>

#include "autograd_support.h"
#include "mgca/comm/exact_grad.h"
#include "mgca/util/error.h"
#include "mgca/util/nvtx.h"

namespace mgca::comm {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Statistics are combined across ranks by one all-reduce of fixed-size
// sums (count, Σx, Σx²) in fp64, 2C+1 values whatever the world size (an
// all-gather of per-rank statistics, as torch's SyncBatchNorm does, grows
// with W: 16.8 MB per 2048-channel layer at W = 512). Each rank forms its Σx²
// as M2 + n·mean² from its own two-pass statistics, so the only cancellation
// left is Σx² − N·mean² in fp64: the variance's relative error is about
// 1e-16·(1 + mean²/var), below fp32 resolution while |mean| < 1e4·std.
// Each rank's sums are taken in fp64 (forward and backward), so the
// statistics do not depend on how the rows are split over ranks.
// Backward all-reduces 2C fp64 sums, again independent of W. Weight and bias
// gradients stay local: the gradient sync averages them like every other
// parameter.
class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               torch::Tensor running_mean, torch::Tensor running_var,
                               double eps, double momentum, const std::shared_ptr<Communicator>& comm) {
    util::ScopedRange range("sync_batchnorm");
    const int64_t batch = input.size(0);
    const int64_t channels = input.size(1);
    const auto compute_type = input.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    auto x = input.reshape({batch, channels, -1}).to(compute_type);
    const int64_t local_count = batch * x.size(2);

    // Local sums in float64 from the float32 values: each rank's share of the
    // statistics is exact to ~1e-16, so the mean and variance do not depend
    // on how the batch is split over ranks (at float32 resolution).
    const auto x64 = x.to(torch::kFloat64);
    const auto fp64 = x.options().dtype(torch::kFloat64);
    torch::Tensor local_sum, local_sum_sq;
    if (local_count > 0) {
      local_sum = x64.sum(std::vector<int64_t>{0, 2});
      const auto local_mean = local_sum / static_cast<double>(local_count);
      const auto local_m2 = (x64 - local_mean.view({1, channels, 1})).square().sum(std::vector<int64_t>{0, 2});
      local_sum_sq = local_m2 + local_sum * local_mean;
    } else {
      local_sum = torch::zeros({channels}, fp64);
      local_sum_sq = torch::zeros({channels}, fp64);
    }
    auto sums = torch::cat({torch::full({1}, static_cast<double>(local_count), fp64), local_sum, local_sum_sq});
    comm->all_reduce(sums, ReduceOp::Sum);  // [2C+1]: count, Σx, Σx²
    // The total stays a tensor: reading it on the host would synchronise the
    // GPU stream. On the host the check is free.
    auto total = sums.narrow(0, 0, 1).squeeze(0);
    if (!total.is_cuda()) {
      const double n = total.item<double>();
      MGCA_CHECK(n > 1, "SyncBatchNorm needs more than one value per channel over all ranks, got {}", n);
    }
    auto mean = sums.narrow(0, 1, channels) / total;
    auto m2 = (sums.narrow(0, 1 + channels, channels) - mean * sums.narrow(0, 1, channels)).clamp_min(0);
    auto var = m2 / total;

    if (running_mean.numel() > 0) {
      torch::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
      running_var.mul_(1 - momentum).add_((m2 / (total - 1)).to(running_var.scalar_type()), momentum);
    }

    auto invstd = (var + eps).rsqrt().to(compute_type);
    auto xhat = (x - mean.to(compute_type).view({1, channels, 1})) * invstd.view({1, channels, 1});
    auto y = xhat;
    if (weight.numel() > 0) {
      y = xhat * weight.to(compute_type).view({1, channels, 1}) + bias.to(compute_type).view({1, channels, 1});
    }
    ctx->save_for_backward({xhat, invstd, weight});
    ctx->saved_data["comm"] = detail::hold(comm);
    ctx->saved_data["total"] = total;  // 0-dim float64 tensor
    ctx->saved_data["shape"] = input.sizes().vec();
    // The output must not be an autograd view (in-place ops such as the
    // model's relu_ are forbidden on views made inside a custom Function) and
    // must not share memory with the saved xhat: y is a fresh contiguous
    // tensor, reshaped without view tracking (a copy only when affine=False
    // and no dtype conversion made one already).
    auto out = y.to(input.scalar_type());
    if (out.data_ptr() == xhat.data_ptr()) out = out.clone();
    return at::_unsafe_view(out, input.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    util::ScopedRange range("sync_batchnorm_backward");
    auto saved = ctx->get_saved_variables();
    auto xhat = saved[0];
    auto invstd = saved[1];
    auto weight = saved[2];
    auto comm = detail::held(ctx->saved_data["comm"]);
    const auto total = ctx->saved_data["total"].toTensor();
    const auto shape = ctx->saved_data["shape"].toIntVector();
    const int64_t channels = xhat.size(1);

    auto grad = grad_outputs[0].reshape(xhat.sizes()).to(xhat.scalar_type());
    // Sums in float64, as in forward: independent of the split over ranks.
    const auto grad64 = grad.to(torch::kFloat64);
    auto local_sum_grad = grad64.sum(std::vector<int64_t>{0, 2});
    auto local_sum_grad_xhat = (grad64 * xhat.to(torch::kFloat64)).sum(std::vector<int64_t>{0, 2});
    auto sums = torch::cat({local_sum_grad, local_sum_grad_xhat});
    comm->all_reduce(sums, ReduceOp::Sum);
    auto mean_grad = (sums.narrow(0, 0, channels) / total).to(xhat.scalar_type());
    auto mean_grad_xhat = (sums.narrow(0, channels, channels) / total).to(xhat.scalar_type());

    auto scale = invstd;
    if (weight.numel() > 0) scale = scale * weight.to(xhat.scalar_type());
    auto grad_input = scale.view({1, channels, 1}) *
                      (grad - mean_grad.view({1, channels, 1}) - xhat * mean_grad_xhat.view({1, channels, 1}));
    torch::Tensor grad_weight, grad_bias;
    if (weight.numel() > 0) {
      grad_weight = local_sum_grad_xhat.to(weight.scalar_type());
      grad_bias = local_sum_grad.to(weight.scalar_type());
    }
    return {grad_input.reshape(shape).to(grad_outputs[0].scalar_type()), grad_weight, grad_bias,
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

SyncBatchNormImpl::SyncBatchNormImpl(SyncBatchNormOptions options, std::shared_ptr<Communicator> comm)
    : options_(options), comm_(std::move(comm)) {
  MGCA_CHECK(options_.num_features > 0, "SyncBatchNorm needs num_features > 0, got {}",
             options_.num_features);
  reset();
}

void SyncBatchNormImpl::reset() {
  const int64_t c = options_.num_features;
  if (options_.affine) {
    weight = register_parameter("weight", torch::ones({c}));
    bias = register_parameter("bias", torch::zeros({c}));
  }
  if (options_.track_running_stats) {
    running_mean = register_buffer("running_mean", torch::zeros({c}));
    running_var = register_buffer("running_var", torch::ones({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kInt64));
  }
}

torch::Tensor SyncBatchNormImpl::forward(const torch::Tensor& input) {
  MGCA_CHECK(input.dim() >= 2 && input.size(1) == options_.num_features,
             "SyncBatchNorm({}) expects input [N, {}, *], got {}", options_.num_features,
             options_.num_features, c10::str(input.sizes()));
  const bool use_batch_stats = is_training() || !options_.track_running_stats;
  if (is_training() && options_.track_running_stats) num_batches_tracked.add_(1);
  if (!use_batch_stats || comm_ == nullptr) {
    return torch::batch_norm(input, weight, bias, running_mean, running_var, use_batch_stats,
                             options_.momentum, options_.eps, /*cudnn_enabled=*/true);
  }
  // libtorch 1.13's custom Functions cannot take undefined tensors: absent
  // affine parameters and running statistics travel as empty placeholders.
  const torch::Tensor none = torch::empty({0}, input.options());
  torch::Tensor rm = options_.track_running_stats ? running_mean : none;
  torch::Tensor rv = options_.track_running_stats ? running_var : none;
  if (options_.affine && exact_gradients_active()) {
    // runtime.batch_invariant: the affine part apart, so that its weight and
    // bias gradients go through exact_op (float64 shadows).
    auto xhat = SyncBatchNormFunction::apply(input, none, none, rm, rv, options_.eps, options_.momentum, comm_);
    return exact_op(
        [](const std::vector<torch::Tensor>& in, const std::vector<torch::Tensor>& p) {
          std::vector<int64_t> shape(static_cast<size_t>(in[0].dim()), 1);
          shape[1] = in[0].size(1);
          return in[0] * p[0].view(shape) + p[1].view(shape);
        },
        {xhat}, {weight, bias});
  }
  torch::Tensor w = options_.affine ? weight : none;
  torch::Tensor b = options_.affine ? bias : none;
  return SyncBatchNormFunction::apply(input, w, b, rm, rv, options_.eps, options_.momentum, comm_);
}

}  // namespace mgca::comm
