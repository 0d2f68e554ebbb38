// What bench_step puts around `mgca train`'s own task: fixed synthetic
// batches instead of the loader (SyntheticSource), and a record of
// communication time, CPU time and page faults per step (RecordingTask).
#pragma once

#include <sys/resource.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/data/batch.h"
#include "mgca/io/safetensors.h"
#include "mgca/train/config.h"
#include "mgca/train/run.h"
#include "mgca/train/task.h"
#include "mgca/util/error.h"
#include "timed_communicator.h"

namespace mgca::bench {

inline comm::CommOptions comm_options(const train::Config& c) { return c.comm.communicator; }

// Batches from a safetensors file (images [n,1,H,W] f32, input_ids and
// attention_mask [n,L] i64), held on the device: global batch k of W·b
// samples is rows k·W·b …, rank r takes its b-slice, the batches cycle (one
// pass over the file is one epoch). "data" time is a slice.
class SyntheticSource : public train::BatchSource {
 public:
  SyntheticSource(const train::Config& config, const comm::Communicator& comm, torch::Device device,
                  const std::string& path)
      : rank_(comm.rank()), world_(comm.size()), batch_size_(config.data.batch_size) {
    MGCA_CHECK(!path.empty(),
               "bench_step: --inputs is required (bench/reference/mgca_step.py --job JOB --write-inputs FILE)");
    io::SafetensorsFile file(path);
    const int64_t n = file.info("images").shape.at(0);
    const int64_t length = config.text.max_length, size = config.model.image_size;
    const auto dtype = train::scalar_type(config.runtime.dtype);
    images_ = file.tensor("images", torch::kFloat32, {n, 1, size, size}).to(device, dtype);
    ids_ = file.tensor("input_ids", torch::kInt64, {n, length}).to(device);
    mask_ = file.tensor("attention_mask", torch::kInt64, {n, length}).to(device);
    batches_ = n / (world_ * batch_size_);
    MGCA_CHECK(batches_ >= 1, "bench_step: {} holds {} samples, fewer than one global batch of {} ranks × {}", path,
               n, world_, batch_size_);
  }

  int64_t size() const override { return batches_ * world_ * batch_size_; }
  void seek(int64_t /*epoch*/, int64_t batch) override { next_ = batch; }
  const data::Batch& next() override {
    const int64_t first = ((next_ % batches_) * world_ + rank_) * batch_size_;
    batch_.images = images_.narrow(0, first, batch_size_);
    batch_.input_ids = ids_.narrow(0, first, batch_size_);
    batch_.attention_mask = mask_.narrow(0, first, batch_size_);
    batch_.indices = torch::arange(first, first + batch_size_, torch::kInt64);
    batch_.step = next_++;
    return batch_;
  }
  const data::Batch& batch() const override { return batch_; }

  // The whole input set (for --dump).
  std::vector<std::pair<std::string, torch::Tensor>> tensors() const {
    return {{"images", images_}, {"input_ids", ids_}, {"attention_mask", mask_}};
  }

 private:
  int rank_, world_;
  int64_t batch_size_;
  torch::Tensor images_, ids_, mask_;
  int64_t batches_ = 0, next_ = 0;
  data::Batch batch_;
};

struct StepRecord {
  double comm_seconds = 0;  // inside communicator calls
  double cpu_seconds = 0;   // user + system time of the process (all threads)
  double page_faults = 0;   // minor page faults of the process
};

// Forwards everything to `mgca train`'s task; at each step start (before_step)
// it records the communicator's, CPU and page-fault counters.
class RecordingTask : public train::Task {
 public:
  RecordingTask(std::unique_ptr<train::Task> inner, std::shared_ptr<TimedCommunicator> comm)
      : inner_(std::move(inner)), comm_(std::move(comm)) {}

  torch::nn::Module& module() override { return inner_->module(); }
  int64_t dataset_size() const override { return inner_->dataset_size(); }
  int64_t batch_size() const override { return inner_->batch_size(); }
  void seek(int64_t epoch, int64_t batch) override { inner_->seek(epoch, batch); }
  void next_batch() override { inner_->next_batch(); }
  train::LossParts forward() override { return inner_->forward(); }
  void before_step(int64_t epoch) override {
    profile_.reset();  // ends (and writes) the profiled step, if any
    record_boundary();
    if (!profile_path_.empty() && static_cast<int64_t>(boundaries_.size()) == profile_step_ + 1) {
      profile_ = std::make_unique<torch::autograd::profiler::RecordProfile>(profile_path_);
    }
    inner_->before_step(epoch);
  }
  // Step `step` (0-based, counted from the first) runs under the autograd
  // profiler; its chrome trace goes to `path` (the profiler's own overhead
  // makes that step slower: it is for the op breakdown, not for timing).
  void profile_step(int64_t step, std::string path) {
    profile_step_ = step;
    profile_path_ = std::move(path);
  }
  void after_backward(int64_t epoch) override { inner_->after_backward(epoch); }
  std::map<std::string, std::string> metadata() const override { return inner_->metadata(); }

  // Per step: the differences between consecutive step starts.
  std::vector<StepRecord> step_records() const {
    std::vector<StepRecord> out;
    for (size_t i = 1; i < boundaries_.size(); ++i) {
      StepRecord r;
      r.comm_seconds = boundaries_[i].comm_seconds - boundaries_[i - 1].comm_seconds;
      r.cpu_seconds = boundaries_[i].cpu_seconds - boundaries_[i - 1].cpu_seconds;
      r.page_faults = boundaries_[i].page_faults - boundaries_[i - 1].page_faults;
      out.push_back(r);
    }
    return out;
  }

 private:
  void record_boundary() {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    StepRecord r;
    r.comm_seconds = comm_->seconds();
    r.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    r.page_faults = static_cast<double>(ru.ru_minflt);
    boundaries_.push_back(r);
  }

  std::unique_ptr<train::Task> inner_;
  std::shared_ptr<TimedCommunicator> comm_;
  std::vector<StepRecord> boundaries_;
  int64_t profile_step_ = -1;
  std::string profile_path_;
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profile_;
};

}  // namespace mgca::bench
