// The sharded loader (docs/contract.md §5.4).
//
// Each epoch has a global order: a permutation of [0, N) keyed by (seed,
// epoch), or [0, N) without shuffling. Step s of the epoch is the global
// batch order[s*B, (s+1)*B); rank r takes its rows [r*b, (r+1)*b), b = B / W.
// Every random choice of a sample (crop, flip, affine, jitter, blur,
// sentence) is drawn from Rng(make_key({seed, epoch, index, stream})), so a
// sample's bytes do not depend on W, on r, on the thread count or on which
// thread made it, and the union of the ranks' batches is the one-rank batch.
// Resuming at (epoch, step) yields the batches of the uninterrupted run.
//
// Worker threads read, augment and tokenise up to `prefetch` batches ahead
// of the step; next() hands batches out in order. On a CUDA device the host
// tensors are pinned and copied with non_blocking=true.
//
// Contract across ranks: every rank passes the same dataset, seed, batch
// size, pipeline and text mode (and its own rank); all ranks then see the
// same number of steps per epoch.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "mgca/data/augment.h"
#include "mgca/data/batch.h"
#include "mgca/io/dataset_file.h"
#include "mgca/text/tokenizer.h"

namespace mgca::data {

enum class TextMode {
  Full,            // MGCA: the report's sentences joined by " "
  SampleSentence,  // ConVIRT: one sentence drawn per sample and epoch
};

struct LoaderOptions {
  int64_t global_batch_size = 0;  // B; must be divisible by world_size
  int rank = 0;
  int world_size = 1;
  uint64_t seed = 0;
  bool shuffle = true;
  // true: N / B steps, the remainder is left out (a different one every
  // epoch when shuffling). false: ceil(N / B) steps; the last global batch
  // is short and ranks get the rows of it they own (possibly none).
  bool drop_last = true;
  AugmentOptions augment;           // pipeline, crop size, ConVIRT ranges
  TextMode text = TextMode::Full;
  int64_t max_length = 112;         // tokens incl. [CLS] and [SEP]
  int num_threads = 1;              // 0: build batches in the calling thread
  int prefetch = 2;                 // batches in flight ahead of the consumer
  torch::Device device = torch::kCPU;
};

class Loader {
 public:
  // tokenizer may be null (no text tensors).
  Loader(std::shared_ptr<const io::Dataset> dataset, std::shared_ptr<const text::Tokenizer> tokenizer,
         LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t steps_per_epoch() const;
  int64_t local_batch_size() const { return local_batch_; }
  const LoaderOptions& options() const { return options_; }
  const io::Dataset& dataset() const { return *dataset_; }

  // Positions the loader at (epoch, step) and starts the workers on it.
  void start(int64_t epoch, int64_t step = 0);
  // The next batch of the epoch, or nullopt after the last step. Errors of
  // the workers (e.g. a corrupt image) are raised here.
  std::optional<Batch> next();
  // Where next() continues: for checkpoints.
  int64_t epoch() const { return epoch_; }
  int64_t step() const { return next_step_; }

  // This rank's global indices at (epoch, step).
  std::vector<int64_t> batch_indices(int64_t epoch, int64_t step) const;
  // One batch built synchronously in the calling thread (no workers).
  Batch make_batch(int64_t epoch, int64_t step) const;

 private:
  struct Slot;
  void worker_loop();
  void stop_workers();
  void arm(Slot& slot, int64_t step);
  Batch allocate(int64_t epoch, int64_t step, int64_t rows) const;
  void fill_sample(Batch& batch, int64_t row, int64_t index) const;
  const std::vector<int64_t>& order(int64_t epoch) const;

  std::shared_ptr<const io::Dataset> dataset_;
  std::shared_ptr<const text::Tokenizer> tokenizer_;
  LoaderOptions options_;
  int64_t local_batch_ = 0;
  bool pin_ = false;

  mutable std::mutex order_mutex_;
  mutable int64_t order_epoch_ = -1;
  mutable std::vector<int64_t> order_;

  int64_t epoch_ = 0, next_step_ = 0;
  std::mutex mutex_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<std::unique_ptr<Slot>> queue_;  // armed slots in step order
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  int64_t in_flight_ = 0;  // samples being made right now
};

}  // namespace mgca::data
