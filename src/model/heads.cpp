#include "mgca/model/heads.h"

#include <torch/torch.h>

#include "attention.h"
#include "format.h"
#include "mgca/util/error.h"

namespace mgca::model {
namespace nn = torch::nn;

ProjectionHeadImpl::ProjectionHeadImpl(int64_t in, int64_t hidden, int64_t out) {
  // No biases before the BatchNorms: BN subtracts the batch mean, so their
  // gradient is exactly zero and Adam would turn its rounding noise into
  // lr-sized steps that differ with the summation order (W).
  fc1 = register_module("fc1", nn::Linear(nn::LinearOptions(in, hidden).bias(false)));
  comm::SyncBatchNormOptions o1;
  o1.num_features = hidden;
  bn1 = register_module("bn1", comm::SyncBatchNorm(o1));
  fc2 = register_module("fc2", nn::Linear(nn::LinearOptions(hidden, out).bias(false)));
  comm::SyncBatchNormOptions o2;
  o2.num_features = out;
  o2.affine = false;
  bn2 = register_module("bn2", comm::SyncBatchNorm(o2));
}

torch::Tensor ProjectionHeadImpl::forward(const torch::Tensor& x) {
  MGCA_CHECK(x.dim() == 2 && x.size(1) == fc1->weight.size(1), "projection head: input must be [n, {}], got {}",
             fc1->weight.size(1), detail::dims(x.sizes()));
  auto h = bn1->forward(detail::linear(x, fc1->weight, fc1->bias)).relu_();
  return bn2->forward(detail::linear(h, fc2->weight, fc2->bias));
}

void ProjectionHeadImpl::set_communicator(const std::shared_ptr<comm::Communicator>& comm) {
  bn1->set_communicator(comm);
  bn2->set_communicator(comm);
}

LocalHeadImpl::LocalHeadImpl(int64_t in, int64_t hidden, int64_t out) {
  head = register_module("head", ProjectionHead(in, hidden, out));
}

torch::Tensor LocalHeadImpl::forward(const torch::Tensor& x) {
  MGCA_CHECK(x.dim() == 3, "local head: input must be [b, T, C], got {}", detail::dims(x.sizes()));
  const int64_t b = x.size(0), t = x.size(1);
  return head->forward(x.reshape({b * t, x.size(2)})).view({b, t, -1});
}

void LocalHeadImpl::set_communicator(const std::shared_ptr<comm::Communicator>& comm) {
  head->set_communicator(comm);
}

MlpHeadImpl::MlpHeadImpl(int64_t in, int64_t hidden, int64_t out) {
  fc1 = register_module("fc1", nn::Linear(in, hidden));
  fc2 = register_module("fc2", nn::Linear(hidden, out));
}

torch::Tensor MlpHeadImpl::forward(const torch::Tensor& x) {
  MGCA_CHECK(x.dim() == 2 && x.size(1) == fc1->weight.size(1), "MLP head: input must be [n, {}], got {}",
             fc1->weight.size(1), detail::dims(x.sizes()));
  return detail::linear(at::relu(detail::linear(x, fc1->weight, fc1->bias)), fc2->weight, fc2->bias);
}

PrototypesImpl::PrototypesImpl(int64_t num_prototypes, int64_t dim) {
  // nn.Linear's default init: U(-1/√d, 1/√d).
  const double bound = 1.0 / std::sqrt(static_cast<double>(dim));
  weight = register_parameter("weight", torch::empty({num_prototypes, dim}).uniform_(-bound, bound));
}

torch::Tensor PrototypesImpl::forward(const torch::Tensor& x) { return at::mm(x, weight.t()); }

void PrototypesImpl::normalize_() {
  torch::NoGradGuard no_grad;
  weight.copy_(torch::nn::functional::normalize(weight, torch::nn::functional::NormalizeFuncOptions().dim(1)));
}

}  // namespace mgca::model
