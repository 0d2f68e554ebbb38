// What the trainer trains: a model with its data and its loss, behind one
// interface so that the trainer (optimization, gradient sync, checkpoints,
// signals, metrics) is the same for MGCA, ConVIRT and the tests' small tasks.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mgca::comm {
class GradShadows;
}

namespace mgca::train {

struct LossParts {
  torch::Tensor total;  // 0-dim with graph: what backward() runs on (the weighted sum)
  // Named 0-dim values for the metrics, each the mean over this rank's rows
  // (so the mean over ranks is the global-batch value). Names starting with
  // "loss" are checked for NaN/Inf every step; the others (accuracies) are not.
  std::vector<std::pair<std::string, torch::Tensor>> parts;
};

// Data contract (docs/contract.md §5.4): epoch e's order is a global permutation from
// (seed, e); micro-batch k of the epoch is global positions [k·W·b, (k+1)·W·b)
// of that order and rank r takes its b-slice; every random choice of a sample
// is keyed by (seed, e, sample index). So the global batch of every step is
// the same for any W, and any position can be resumed.
class Task {
 public:
  virtual ~Task() = default;

  // Everything trained and checkpointed: parameters (all of them go to the
  // optimizer; those without a gradient at a step are skipped) and buffers.
  virtual torch::nn::Module& module() = 0;
  // Samples in the dataset (global) and per rank per micro-batch.
  virtual int64_t dataset_size() const = 0;
  virtual int64_t batch_size() const = 0;
  // The next next_batch() returns micro-batch `batch` of `epoch`.
  virtual void seek(int64_t epoch, int64_t batch) = 0;
  // Loads the next micro-batch onto the device (timed as "data").
  virtual void next_batch() = 0;
  // The loss of the loaded micro-batch on this rank (timed as "forward").
  // Collective when the model or loss communicates (SyncBatchNorm, gathers).
  virtual LossParts forward() = 0;
  // Before the first forward of each optimizer step (MGCA: prototype rows re-normalized).
  virtual void before_step(int64_t /*epoch*/) {}
  // After the gradients are synchronized, before clipping and the update
  // (MGCA: the prototype gradient is dropped during the first epochs).
  virtual void after_backward(int64_t /*epoch*/) {}
  // runtime.batch_invariant: the float64 gradient shadows of the trainable
  // parameters (comm/exact_grad.h) that forward() fills; the trainer syncs
  // them (summed over ranks) and writes them into .grad. nullptr otherwise.
  virtual comm::GradShadows* grad_shadows() { return nullptr; }
  // Extra metadata for model.safetensors of checkpoints (method, encoder, sizes).
  virtual std::map<std::string, std::string> metadata() const { return {}; }
};

}  // namespace mgca::train
