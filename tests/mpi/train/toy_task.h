// A small contrastive Task with the trainer's data contract, for testing the
// trainer itself (resume, the distributed contract, signals, NaN detection)
// in seconds: two towers (one with SyncBatchNorm), an InfoNCE loss over
// globally gathered negatives, a prototype layer frozen in the first
// epoch as MGCA's, and a layer no loss reaches.
#pragma once

#include <torch/torch.h>

#include <csignal>

#include "mgca/comm/differentiable.h"
#include "mgca/comm/sync_batchnorm.h"
#include "mgca/train/task.h"
#include "mgca/util/rng.h"

namespace mgca::train::toy {

struct ToyOptions {
  int64_t dataset_size = 48;
  int64_t batch_size = 4;  // per rank
  uint64_t seed = 5;
  int64_t freeze_prototypes_epochs = 1;
  int64_t nan_at_step = -1;      // forward returns a NaN prototype loss at this optimizer step (0-based)
  int64_t spike_at_step = -1;    // forward multiplies the loss by spike_factor at this optimizer step (0-based, absolute)
  double spike_factor = 50.0;
  int signal_rank = -1;          // this rank raises `signal` when it loads micro-batch `signal_at_batch`
  int64_t signal_at_batch = -1;  // counted from the start of training (global micro-batch number)
  int signal = SIGUSR1;
  int64_t accumulate = 1;        // micro-batches per step (turns the batch count into a step for nan_at_step)
};

struct ToyNet : torch::nn::Module {
  explicit ToyNet(std::shared_ptr<comm::Communicator> comm) {
    // No bias before BatchNorm: its exact gradient is 0, so Adam would turn
    // floating-point noise into lr-sized steps that differ between runs.
    img1 = register_module("img1", torch::nn::Linear(torch::nn::LinearOptions(16, 32).bias(false)));
    bn = register_module("bn", comm::SyncBatchNorm(comm::SyncBatchNormOptions{32}, comm));
    img2 = register_module("img2", torch::nn::Linear(32, 8));
    txt1 = register_module("txt1", torch::nn::Linear(12, 32));
    txt2 = register_module("txt2", torch::nn::Linear(32, 8));
    prototypes = register_parameter("prototypes", torch::randn({6, 8}));
    // Never called: a branch no loss reaches (its gradient stays undefined on
    // every rank; GradSync must neither wait for it nor let it be updated).
    unused = register_module("unused", torch::nn::Linear(8, 4));
  }
  torch::nn::Linear img1{nullptr}, img2{nullptr}, txt1{nullptr}, txt2{nullptr}, unused{nullptr};
  comm::SyncBatchNorm bn{nullptr};
  torch::Tensor prototypes;
};

class ToyTask : public Task {
 public:
  ToyTask(ToyOptions options, std::shared_ptr<comm::Communicator> comm)
      : options_(options), comm_(std::move(comm)), net_(std::make_shared<ToyNet>(comm_)) {
    // The dataset: x_g ~ N(0, I16), y_g = A·x_g[:12] + noise, all keyed by g.
    x_ = torch::empty({options_.dataset_size, 16});
    y_ = torch::empty({options_.dataset_size, 12});
    util::Rng a_rng(util::make_key({options_.seed, 999}));
    torch::Tensor a = torch::empty({12, 12});
    for (int64_t i = 0; i < a.numel(); ++i) a.view({-1})[i] = a_rng.normal();
    for (int64_t g = 0; g < options_.dataset_size; ++g) {
      util::Rng rng(util::make_key({options_.seed, static_cast<uint64_t>(g)}));
      for (int64_t j = 0; j < 16; ++j) x_[g][j] = rng.normal();
      torch::Tensor noise = torch::empty({12});
      for (int64_t j = 0; j < 12; ++j) noise[j] = 0.1 * rng.normal();
      y_[g] = torch::mv(a, x_[g].slice(0, 0, 12)) + noise;
    }
  }

  torch::nn::Module& module() override { return *net_; }
  int64_t dataset_size() const override { return options_.dataset_size; }
  int64_t batch_size() const override { return options_.batch_size; }

  void seek(int64_t epoch, int64_t batch) override {
    epoch_ = epoch;
    batch_ = batch;
    order_ = util::permutation(options_.dataset_size, util::make_key({options_.seed, static_cast<uint64_t>(epoch)}));
  }

  void next_batch() override {
    if (comm_->rank() == options_.signal_rank && loaded_ == options_.signal_at_batch) std::raise(options_.signal);
    const int64_t b = options_.batch_size;
    const int64_t first = batch_ * b * comm_->size() + comm_->rank() * b;
    std::vector<int64_t> index(order_.begin() + first, order_.begin() + first + b);
    const torch::Tensor idx = torch::tensor(index, torch::kInt64);
    // A per-(epoch, sample) keyed "augmentation".
    torch::Tensor jitter = torch::empty({b, 16});
    for (int64_t i = 0; i < b; ++i) {
      util::Rng rng(util::make_key({options_.seed, static_cast<uint64_t>(epoch_), static_cast<uint64_t>(index[i]), 7}));
      for (int64_t j = 0; j < 16; ++j) jitter[i][j] = 0.05 * rng.normal();
    }
    x_batch_ = x_.index_select(0, idx) + jitter;
    y_batch_ = y_.index_select(0, idx);
    ++batch_;
    ++loaded_;
  }

  LossParts forward() override {
    const int64_t b = options_.batch_size;
    torch::Tensor img = torch::nn::functional::normalize(
        net_->img2(torch::relu(net_->bn(net_->img1(x_batch_)))), torch::nn::functional::NormalizeFuncOptions().dim(1));
    torch::Tensor txt = torch::nn::functional::normalize(net_->txt2(torch::relu(net_->txt1(y_batch_))),
                                                         torch::nn::functional::NormalizeFuncOptions().dim(1));
    torch::Tensor all = comm::all_gather_with_grad(torch::cat({img, txt}, 1), comm_);
    torch::Tensor img_all = all.slice(1, 0, 8), txt_all = all.slice(1, 8, 16);
    torch::Tensor target = torch::arange(b, torch::kInt64) + comm_->rank() * b;
    torch::Tensor i2t = torch::nn::functional::cross_entropy(img.mm(txt_all.t()) / 0.1, target);
    torch::Tensor t2i = torch::nn::functional::cross_entropy(txt.mm(img_all.t()) / 0.1, target);
    torch::Tensor loss_ita = i2t + t2i;
    torch::Tensor q = torch::softmax(txt.mm(net_->prototypes.t()) / 0.2, 1).detach();
    torch::Tensor loss_proto = -(q * torch::log_softmax(img.mm(net_->prototypes.t()) / 0.2, 1)).sum(1).mean();
    const int64_t step = (loaded_ - 1) / std::max<int64_t>(options_.accumulate, 1);
    if (step == options_.nan_at_step) loss_proto = loss_proto * std::numeric_limits<float>::quiet_NaN();
    torch::Tensor total = loss_ita + 0.5 * loss_proto;
    // The spike is placed by the absolute step (the data position), so a resumed run meets it too.
    const int64_t batches_per_epoch = options_.dataset_size / (options_.batch_size * comm_->size());
    const int64_t absolute_step = (epoch_ * batches_per_epoch + batch_ - 1) / std::max<int64_t>(options_.accumulate, 1);
    if (absolute_step == options_.spike_at_step) total = total * options_.spike_factor;
    torch::Tensor acc = (img.mm(txt_all.t()).argmax(1) == target).to(torch::kFloat32).mean() * 100;
    return LossParts{total,
                     {{"loss", total.detach()},
                      {"loss_ita", loss_ita.detach()},
                      {"loss_proto", loss_proto.detach()},
                      {"acc1", acc}}};
  }

  void before_step(int64_t) override {
    torch::NoGradGuard no_grad;
    net_->prototypes.div_(net_->prototypes.norm(2, 1, true));
  }
  void after_backward(int64_t epoch) override {
    if (epoch < options_.freeze_prototypes_epochs) net_->prototypes.mutable_grad() = torch::Tensor();
  }
  std::map<std::string, std::string> metadata() const override { return {{"task", "toy"}}; }

 private:
  ToyOptions options_;
  std::shared_ptr<comm::Communicator> comm_;
  std::shared_ptr<ToyNet> net_;
  torch::Tensor x_, y_, x_batch_, y_batch_;
  std::vector<int64_t> order_;
  int64_t epoch_ = 0, batch_ = 0, loaded_ = 0;
};

}  // namespace mgca::train::toy
