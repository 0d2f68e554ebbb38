// DDP-style gradient synchronisation: averaged gradients over all ranks, with
// communication overlapping backward.
//
// Parameters (requires_grad only; frozen ones are ignored) are packed into
// buckets in reverse registration order, the order backward produces their
// gradients: the first bucket is small (first_bucket_cap_mb) so that
// communication starts early, the rest hold up to bucket_cap_mb each; one
// bucket holds one dtype on one device. A hook on every parameter copies its
// gradient into its bucket; when a bucket is complete it is all-reduced
// (Avg) asynchronously while backward goes on. Buckets launch strictly in
// index order on every rank (a complete bucket waits for its predecessors),
// so the collectives match across ranks whatever order gradients arrive in.
// finalize() launches what is left, waits, and writes the averaged gradient
// into each parameter's .grad: call it after the (last) backward of a step
// and before clipping and the optimizer.
//
//   comm::GradSync sync(model->named_parameters(), comm);
//   for (micro = 0; micro < k; ++micro) {
//     auto guard = micro + 1 < k ? sync.no_sync() : comm::GradSync::NoSync();
//     loss = ...; loss.backward();           // no_sync: gradients accumulate locally
//   }
//   sync.finalize();                          // .grad = average over ranks of the accumulated sums
//   optimizer.step();
//
// Across ranks: every rank constructs GradSync with the same parameter list
// (names, shapes, dtypes; checked at construction) and calls finalize() once
// per synchronised step. Afterwards .grad is identical on every rank.
// Parameters without a gradient: a parameter whose gradient did not arrive
// on some rank this step (unused branch, prototypes in their frozen epoch)
// contributes its locally accumulated .grad, or zeros, to the average; a
// parameter that has no gradient on ANY rank keeps an undefined .grad (the
// optimizer skips it, as in PyTorch). Such buckets launch at finalize(); call
// prepare_for_backward(loss) to launch them as early as possible instead.
// The bucket layout never changes, so results are bitwise reproducible run
// to run (and across checkpoint/resume).
#pragma once

#include <torch/ordered_dict.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/comm/types.h"

namespace mgca::comm {

// Figures of the last synchronised step (finalize() fills them).
struct GradSyncStats {
  int64_t steps = 0;                  // finalize() calls so far
  int buckets = 0;                    // number of buckets
  int launched_during_backward = 0;   // buckets launched from gradient hooks
  int launched_at_finalize = 0;       // buckets launched by finalize() (incomplete ones)
  int64_t parameters_without_grad = 0;  // parameters with no gradient on any rank
  double finalize_seconds = 0;        // time inside finalize(): the exposed communication
};

struct GradBucketInfo {
  std::vector<std::string> names;  // parameter names in the bucket, in bucket order
  int64_t numel = 0;
  int64_t bytes = 0;       // of the gradients, in their dtype
  int64_t wire_bytes = 0;  // what the all-reduce sends per rank (bf16: half of float32)
  torch::ScalarType dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
};

class GradSync {
 public:
  using NamedParameters = std::vector<std::pair<std::string, torch::Tensor>>;

  // `parameters` in registration order (Module::named_parameters()); entries
  // without requires_grad are skipped, a tensor listed twice counts once.
  // Collective: checks that every rank passes the same layout.
  GradSync(const NamedParameters& parameters, std::shared_ptr<Communicator> comm, GradSyncOptions options = {});
  GradSync(const torch::OrderedDict<std::string, torch::Tensor>& parameters, std::shared_ptr<Communicator> comm,
           GradSyncOptions options = {});
  // Removes the hooks (after waiting for buckets still in flight).
  ~GradSync();
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  // While a NoSync guard from no_sync() lives, backward accumulates
  // gradients locally and nothing is communicated (gradient accumulation
  // micro-steps). A default-constructed guard does nothing.
  class NoSync {
   public:
    NoSync() = default;
    NoSync(NoSync&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
    NoSync& operator=(NoSync&& other) noexcept;
    ~NoSync();

   private:
    friend class GradSync;
    explicit NoSync(GradSync* owner) : owner_(owner) {}
    GradSync* owner_ = nullptr;
  };
  [[nodiscard]] NoSync no_sync();

  // Optional, before backward of a synchronised step: parameters that the
  // graphs of `outputs` cannot reach will get no gradient, so their slots are
  // filled now and their buckets need not wait for finalize().
  void prepare_for_backward(const std::vector<torch::Tensor>& outputs);

  // Completes the step: launches the remaining buckets, waits for all, and
  // writes the averaged gradients into .grad. Collective.
  void finalize();

  const GradSyncStats& stats() const { return stats_; }
  std::vector<GradBucketInfo> buckets() const;
  // Buckets launched so far in the current step (for tests and the profiler).
  int launched() const;

 private:
  struct Param {
    std::string name;
    torch::Tensor tensor;
    int bucket = -1;
    int64_t offset = 0;  // in the bucket's flat buffer
    int64_t numel = 0;
    unsigned hook = 0;
    bool hooked = false;
  };
  struct Bucket {
    std::vector<int> params;  // indices into params_
    torch::Tensor flat;       // [numel] dtype/device of its parameters
    torch::Tensor wire;       // bf16 copy of flat that is all-reduced, or undefined (flat is)
    int pending = 0;          // parameters not yet ready this step
    bool launched = false;
    std::shared_ptr<Work> work;
  };

  void build(GradSyncOptions options);
  void check_layout_across_ranks();
  void on_gradient(int index, const torch::Tensor& grad);
  // Fills parameter i's slot from its accumulated .grad (or zeros) when its
  // gradient will not arrive this step. Needs mutex_.
  void mark_without_gradient(int index);
  void mark_ready(int index);          // needs mutex_
  void launch_in_order(bool from_hook);  // needs mutex_
  void reset_step();                   // needs mutex_

  std::shared_ptr<Communicator> comm_;
  GradSyncOptions options_;
  std::vector<Param> params_;
  std::vector<Bucket> buckets_;
  GradSyncStats stats_;

  mutable std::mutex mutex_;  // hooks may run on autograd threads
  int no_sync_depth_ = 0;
  std::vector<uint8_t> ready_;     // per parameter, this step
  std::vector<uint8_t> had_grad_;  // per parameter, this step: a gradient (or accumulated .grad) exists here
  int next_launch_ = 0;
  int launched_from_hooks_ = 0;
};

}  // namespace mgca::comm
