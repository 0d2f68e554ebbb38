// A Communicator that forwards every call to another one and adds up the
// wall time the calling threads spend inside it: blocking collectives, and
// Work::wait() of asynchronous ones (not their launch, not the time they
// run in the background). With MPI on CPU a blocking collective occupies
// its caller for its whole duration, so this total is the communication the
// step is exposed to: SyncBatchNorm, ITA's gather/scatter, Sinkhorn, the
// gradient sync's final wait, the trainer's loss and flag reductions.
//
// Across ranks: exactly the inner communicator's contract (it adds no
// collectives of its own).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "mgca/comm/communicator.h"

namespace mgca::bench {

class TimedCommunicator final : public comm::Communicator {
 public:
  explicit TimedCommunicator(std::shared_ptr<comm::Communicator> inner) : inner_(std::move(inner)) {}

  // Seconds spent inside calls so far (all threads), and the number of calls.
  double seconds() const { return static_cast<double>(nanos_->load()) * 1e-9; }
  int64_t calls() const { return calls_->load(); }

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  int local_rank() const override { return inner_->local_rank(); }
  int local_size() const override { return inner_->local_size(); }
  const std::string& host() const override { return inner_->host(); }
  const comm::CommOptions& options() const override { return inner_->options(); }
  int device_index() const override { return inner_->device_index(); }
  // The checkpoint writer's communicator: its collectives are not the step's.
  std::shared_ptr<comm::Communicator> duplicate_for_host() override { return inner_->duplicate_for_host(); }
  std::string describe() const override { return inner_->describe() + " (timed)"; }

  void all_reduce(torch::Tensor& tensor, comm::ReduceOp op) override {
    Scope s(*this);
    inner_->all_reduce(tensor, op);
  }
  std::shared_ptr<comm::Work> all_reduce_async(torch::Tensor tensor, comm::ReduceOp op, bool validate) override {
    return std::make_shared<TimedWork>(inner_->all_reduce_async(std::move(tensor), op, validate), nanos_, calls_);
  }
  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    Scope s(*this);
    return inner_->all_gather(tensor);
  }
  void all_gather_into(torch::Tensor& output, const torch::Tensor& input) override {
    Scope s(*this);
    inner_->all_gather_into(output, input);
  }
  torch::Tensor reduce_scatter(const torch::Tensor& tensor, comm::ReduceOp op) override {
    Scope s(*this);
    return inner_->reduce_scatter(tensor, op);
  }
  void reduce_scatter_into(torch::Tensor& output, const torch::Tensor& input, comm::ReduceOp op) override {
    Scope s(*this);
    inner_->reduce_scatter_into(output, input, op);
  }
  void broadcast(torch::Tensor& tensor, int root) override {
    Scope s(*this);
    inner_->broadcast(tensor, root);
  }
  void barrier() override {
    Scope s(*this);
    inner_->barrier();
  }
  double all_reduce_scalar(double value, comm::ReduceOp op) override {
    Scope s(*this);
    return inner_->all_reduce_scalar(value, op);
  }
  bool any(bool flag) override {
    Scope s(*this);
    return inner_->any(flag);
  }
  std::string broadcast_string(const std::string& value, int root) override {
    Scope s(*this);
    return inner_->broadcast_string(value, root);
  }

 private:
  using Clock = std::chrono::steady_clock;
  using Counter = std::shared_ptr<std::atomic<int64_t>>;

  static void add(const Counter& nanos, const Counter& calls, Clock::time_point start) {
    nanos->fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
    calls->fetch_add(1);
  }

  struct Scope {
    explicit Scope(TimedCommunicator& c) : owner(c), start(Clock::now()) {}
    ~Scope() { add(owner.nanos_, owner.calls_, start); }
    TimedCommunicator& owner;
    Clock::time_point start;
  };

  class TimedWork final : public comm::Work {
   public:
    TimedWork(std::shared_ptr<comm::Work> inner, Counter nanos, Counter calls)
        : inner_(std::move(inner)), nanos_(std::move(nanos)), calls_(std::move(calls)) {}
    void wait() override {
      const auto start = Clock::now();
      inner_->wait();
      add(nanos_, calls_, start);
    }
    bool test() override { return inner_->test(); }

   private:
    std::shared_ptr<comm::Work> inner_;
    Counter nanos_, calls_;
  };

  std::shared_ptr<comm::Communicator> inner_;
  Counter nanos_ = std::make_shared<std::atomic<int64_t>>(0);
  Counter calls_ = std::make_shared<std::atomic<int64_t>>(0);
};

}  // namespace mgca::bench
