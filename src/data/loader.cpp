#include "mgca/data/loader.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>

#include "mgca/text/report.h"
#include "mgca/util/error.h"
#include "mgca/util/rng.h"

namespace mgca::data {
namespace {
// Independent random streams of a sample within an epoch.
enum Stream : uint64_t { kOrder = 0x6f72646572ULL, kImage = 1, kText = 2 };
}  // namespace

Batch Batch::to(const torch::Device& device, bool non_blocking) const {
  Batch out = *this;
  if (device == images.device()) return out;
  const auto move = [&](const torch::Tensor& t) { return t.defined() ? t.to(device, non_blocking) : t; };
  out.images = move(images);
  out.input_ids = move(input_ids);
  out.attention_mask = move(attention_mask);
  out.labels = move(labels);
  out.indices = move(indices);
  return out;
}

// A batch being made: its tensors, raw pointers for the workers, and counts.
struct Loader::Slot {
  int64_t step = 0;
  Batch batch;
  std::vector<int64_t> indices;
  int64_t claimed = 0, done = 0;
  std::exception_ptr error;
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

Loader::Loader(std::shared_ptr<const io::Dataset> dataset, std::shared_ptr<const text::Tokenizer> tokenizer,
               LoaderOptions options)
    : dataset_(std::move(dataset)), tokenizer_(std::move(tokenizer)), options_(std::move(options)) {
  MGCA_CHECK(dataset_ != nullptr, "loader: no dataset");
  const auto& o = options_;
  MGCA_CHECK(o.world_size >= 1 && o.rank >= 0 && o.rank < o.world_size, "loader: rank {} of {} ranks", o.rank,
             o.world_size);
  MGCA_CHECK(o.global_batch_size > 0 && o.global_batch_size % o.world_size == 0,
             "loader: global batch size {} must be a positive multiple of the world size {}", o.global_batch_size,
             o.world_size);
  MGCA_CHECK(o.augment.crop_size > 0 && o.augment.crop_size <= dataset_->image_size(),
             "loader: crop size {} does not fit dataset '{}' ({}-pixel images)", o.augment.crop_size,
             dataset_->dir().string(), dataset_->image_size());
  MGCA_CHECK(o.max_length >= 2, "loader: max_length {} leaves no room for [CLS] and [SEP]", o.max_length);
  MGCA_CHECK(o.num_threads >= 0 && o.prefetch >= 1, "loader: num_threads {} / prefetch {}", o.num_threads,
             o.prefetch);
  MGCA_CHECK(dataset_->size() >= o.global_batch_size || !o.drop_last,
             "loader: dataset '{}' has {} samples, fewer than one global batch of {}", dataset_->dir().string(),
             dataset_->size(), o.global_batch_size);
  local_batch_ = o.global_batch_size / o.world_size;
  pin_ = o.device.is_cuda() && torch::cuda::is_available();
  for (int t = 0; t < o.num_threads; ++t) workers_.emplace_back([this] { worker_loop(); });
}

Loader::~Loader() { stop_workers(); }

void Loader::stop_workers() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& worker : workers_) worker.join();
  workers_.clear();
}

int64_t Loader::steps_per_epoch() const {
  const int64_t n = dataset_->size(), b = options_.global_batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

const std::vector<int64_t>& Loader::order(int64_t epoch) const {
  // Called with order_mutex_ held.
  if (order_epoch_ != epoch) {
    const int64_t n = dataset_->size();
    if (options_.shuffle) {
      order_ = util::permutation(n, util::make_key({options_.seed, static_cast<uint64_t>(epoch), kOrder}));
    } else {
      order_.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) order_[static_cast<size_t>(i)] = i;
    }
    order_epoch_ = epoch;
  }
  return order_;
}

std::vector<int64_t> Loader::batch_indices(int64_t epoch, int64_t step) const {
  MGCA_CHECK(epoch >= 0 && step >= 0 && step < steps_per_epoch(), "loader: step {} of epoch {} out of range [0, {})",
             step, epoch, steps_per_epoch());
  std::lock_guard<std::mutex> lock(order_mutex_);
  const auto& global = order(epoch);
  const int64_t n = dataset_->size(), begin = step * options_.global_batch_size;
  const int64_t in_batch = std::min(options_.global_batch_size, n - begin);
  const int64_t lo = std::min(options_.rank * local_batch_, in_batch);
  const int64_t hi = std::min((options_.rank + 1) * local_batch_, in_batch);
  return std::vector<int64_t>(global.begin() + begin + lo, global.begin() + begin + hi);
}

Batch Loader::allocate(int64_t epoch, int64_t step, int64_t rows) const {
  const int64_t C = options_.augment.crop_size;
  const auto host = torch::TensorOptions().pinned_memory(pin_);
  Batch batch;
  batch.epoch = epoch;
  batch.step = step;
  batch.images = torch::empty({rows, 1, C, C}, host.dtype(torch::kFloat32));
  if (tokenizer_) {
    batch.input_ids = torch::empty({rows, options_.max_length}, host.dtype(torch::kInt64));
    batch.attention_mask = torch::empty({rows, options_.max_length}, host.dtype(torch::kInt64));
  }
  if (dataset_->has_labels()) batch.labels = torch::empty({rows, dataset_->num_labels()}, host.dtype(torch::kFloat32));
  batch.indices = torch::empty({rows}, host.dtype(torch::kInt64));
  batch.ids.resize(static_cast<size_t>(rows));
  batch.texts.resize(static_cast<size_t>(rows));
  return batch;
}

// Fills row `row` of a batch whose tensors were allocated by allocate():
// plain writes through raw pointers, no torch ops (workers run this).
void Loader::fill_sample(Batch& batch, int64_t row, int64_t index) const {
  const int64_t S = dataset_->image_size(), C = options_.augment.crop_size;
  const auto epoch = static_cast<uint64_t>(batch.epoch);
  const auto key = static_cast<uint64_t>(index);
  thread_local std::vector<uint8_t> pixels;
  pixels.resize(static_cast<size_t>(S * S));
  dataset_->read_image(index, pixels.data());
  util::Rng image_rng(util::make_key({options_.seed, epoch, key, kImage}));
  augment_image(options_.augment, pixels.data(), S, image_rng, batch.images.data_ptr<float>() + row * C * C);

  const std::string& report = dataset_->report(index);
  std::string text;
  if (options_.text == TextMode::Full) {
    text = report;  // MGCA: " ".join(sentences)
    std::replace(text.begin(), text.end(), '\n', ' ');
  } else {
    const std::vector<std::string> sentences = text::split_sentences(report);
    if (!sentences.empty()) {
      util::Rng text_rng(util::make_key({options_.seed, epoch, key, kText}));
      text = sentences[static_cast<size_t>(text_rng.randint(0, static_cast<int64_t>(sentences.size())))];
    }
  }
  if (tokenizer_) {
    const text::Encoding encoding = tokenizer_->encode(text, options_.max_length);
    MGCA_CHECK(static_cast<int64_t>(encoding.input_ids.size()) == options_.max_length,
               "tokenizer returned {} ids for max_length {}", encoding.input_ids.size(), options_.max_length);
    const size_t bytes = static_cast<size_t>(options_.max_length) * sizeof(int64_t);
    std::memcpy(batch.input_ids.data_ptr<int64_t>() + row * options_.max_length, encoding.input_ids.data(), bytes);
    std::memcpy(batch.attention_mask.data_ptr<int64_t>() + row * options_.max_length, encoding.attention_mask.data(),
                bytes);
  }
  if (dataset_->has_labels()) {
    const int64_t L = dataset_->num_labels();
    std::memcpy(batch.labels.data_ptr<float>() + row * L, dataset_->labels(index), static_cast<size_t>(L) * sizeof(float));
  }
  batch.indices.data_ptr<int64_t>()[row] = index;
  batch.ids[static_cast<size_t>(row)] = dataset_->id(index);
  batch.texts[static_cast<size_t>(row)] = std::move(text);
}

Batch Loader::make_batch(int64_t epoch, int64_t step) const {
  const auto indices = batch_indices(epoch, step);
  Batch batch = allocate(epoch, step, static_cast<int64_t>(indices.size()));
  for (size_t row = 0; row < indices.size(); ++row) fill_sample(batch, static_cast<int64_t>(row), indices[row]);
  return batch;
}

void Loader::arm(Slot& slot, int64_t step) {
  slot.step = step;
  slot.indices = batch_indices(epoch_, step);
  slot.batch = allocate(epoch_, step, slot.size());
  slot.claimed = slot.done = 0;
  slot.error = nullptr;
}

void Loader::start(int64_t epoch, int64_t step) {
  MGCA_CHECK(epoch >= 0 && step >= 0 && step <= steps_per_epoch(), "loader: cannot start at step {} of epoch {} ({} steps)",
             step, epoch, steps_per_epoch());
  std::unique_lock<std::mutex> lock(mutex_);
  // Cancel what is queued and let the samples being made finish.
  for (auto& slot : queue_) slot->claimed = slot->size();
  done_cv_.wait(lock, [&] { return in_flight_ == 0; });
  queue_.clear();
  epoch_ = epoch;
  next_step_ = step;
  if (workers_.empty()) return;
  const int64_t last = std::min(steps_per_epoch(), step + options_.prefetch);
  for (int64_t s = step; s < last; ++s) {
    auto slot = std::make_unique<Slot>();
    arm(*slot, s);
    queue_.push_back(std::move(slot));
  }
  lock.unlock();
  work_cv_.notify_all();
}

std::optional<Batch> Loader::next() {
  if (next_step_ >= steps_per_epoch()) return std::nullopt;
  Batch out;
  if (workers_.empty()) {
    out = make_batch(epoch_, next_step_++);
  } else {
    std::unique_lock<std::mutex> lock(mutex_);
    MGCA_CHECK(!queue_.empty() && queue_.front()->step == next_step_,
               "loader: next() without start() (epoch {}, step {})", epoch_, next_step_);
    Slot& slot = *queue_.front();
    done_cv_.wait(lock, [&] { return slot.done == slot.size(); });
    if (slot.error) {
      // Leave the loader restartable: nothing of this step is kept.
      const std::exception_ptr error = slot.error;
      for (auto& queued : queue_) queued->claimed = queued->size();
      done_cv_.wait(lock, [&] { return in_flight_ == 0; });
      queue_.clear();
      std::rethrow_exception(error);
    }
    out = std::move(slot.batch);
    std::unique_ptr<Slot> reuse = std::move(queue_.front());
    queue_.pop_front();
    const int64_t following = (queue_.empty() ? next_step_ : queue_.back()->step) + 1;
    ++next_step_;
    if (following < steps_per_epoch()) {
      arm(*reuse, following);
      queue_.push_back(std::move(reuse));
      lock.unlock();
      work_cv_.notify_all();
    }
  }
  if (options_.device != out.images.device()) out = out.to(options_.device, /*non_blocking=*/pin_);
  return out;
}

void Loader::worker_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    Slot* slot = nullptr;
    work_cv_.wait(lock, [&] {
      if (stopping_) return true;
      for (auto& queued : queue_) {
        if (queued->claimed < queued->size()) {
          slot = queued.get();
          return true;
        }
      }
      return false;
    });
    if (stopping_) return;
    const int64_t row = slot->claimed++;
    ++in_flight_;
    lock.unlock();
    std::exception_ptr error;
    try {
      fill_sample(slot->batch, row, slot->indices[static_cast<size_t>(row)]);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    --in_flight_;
    ++slot->done;
    if (error && !slot->error) slot->error = error;
    if (slot->done == slot->size() || in_flight_ == 0) done_cv_.notify_all();
  }
}

}  // namespace mgca::data
