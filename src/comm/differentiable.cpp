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

}  // namespace

torch::Tensor all_gather_with_grad(const torch::Tensor& tensor, const std::shared_ptr<Communicator>& comm) {
  MGCA_CHECK(comm != nullptr, "all_gather_with_grad needs a communicator");
  MGCA_CHECK(tensor.dim() >= 1, "all_gather_with_grad needs a tensor with a batch dimension");
  return AllGatherWithGrad::apply(tensor, comm);
}

}  // namespace mgca::comm
