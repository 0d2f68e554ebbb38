#include "mgca/comm/differentiable.h"

#include <torch/torch.h>

#include "autograd_support.h"
#include "mgca/util/error.h"

namespace mgca::comm {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class AllGatherWithGrad : public torch::autograd::Function<AllGatherWithGrad> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input,
                               const std::shared_ptr<Communicator>& comm) {
    ctx->saved_data["comm"] = detail::hold(comm);
    return comm->all_gather(input);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto comm = detail::held(ctx->saved_data["comm"]);
    auto grad = grad_outputs[0].contiguous();
    return {comm->reduce_scatter(grad, ReduceOp::Sum), torch::Tensor()};
  }
};

class AllGatherReplicated : public torch::autograd::Function<AllGatherReplicated> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input,
                               const std::shared_ptr<Communicator>& comm) {
    ctx->saved_data["offset"] = static_cast<int64_t>(comm->rank()) * input.size(0);
    ctx->saved_data["rows"] = input.size(0);
    return comm->all_gather(input);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const int64_t offset = ctx->saved_data["offset"].toInt(), rows = ctx->saved_data["rows"].toInt();
    return {grad_outputs[0].narrow(0, offset, rows).contiguous(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor all_gather_replicated(const torch::Tensor& tensor, const std::shared_ptr<Communicator>& comm) {
  MGCA_CHECK(comm != nullptr, "all_gather_replicated needs a communicator");
  MGCA_CHECK(tensor.dim() >= 1, "all_gather_replicated needs a tensor with a batch dimension");
  return AllGatherReplicated::apply(tensor, comm);
}

torch::Tensor all_gather_with_grad(const torch::Tensor& tensor, const std::shared_ptr<Communicator>& comm) {
  MGCA_CHECK(comm != nullptr, "all_gather_with_grad needs a communicator");
  MGCA_CHECK(tensor.dim() >= 1, "all_gather_with_grad needs a tensor with a batch dimension");
  return AllGatherWithGrad::apply(tensor, comm);
}

}  // namespace mgca::comm
