// The [data] table of a job: the training set and how the loader feeds it
// (no torch). visit_data_options() binds each job-file key to its field with
// its meaning and allowed range.
#pragma once

#include <cstdint>
#include <string>

#include "mgca/data/augment.h"
#include "mgca/util/option_types.h"

namespace mgca::data {

struct DataOptions {
  std::string train;        // dataset folder (dataset.json + shards); required
  int64_t batch_size = 72;  // samples per rank per micro-step (global batch = W × this × accumulate)
  int64_t workers = 2;      // loader threads per rank
  int64_t prefetch = 4;     // batches decoded ahead of the step
  Pipeline augment = Pipeline::Mgca;  // eval: centre crop, no randomness
};

// f(key, field&, meaning, util::Range) for every key of [data], in the resolved TOML's order.
template <typename Options, typename F>
void visit_data_options(Options& d, F&& f) {
  using util::Range;
  f("data.train", d.train, "dataset folder (dataset.json + shards) with reports; required", Range{});
  f("data.batch_size", d.batch_size, "samples per rank per micro-step", Range::at_least(1));
  f("data.workers", d.workers, "loader threads per rank", Range::at_least(0));
  f("data.prefetch", d.prefetch, "batches prepared ahead of the step", Range::at_least(1));
  f("data.augment", d.augment, "augmentations (docs/contract.md §5.4); eval: centre crop, no randomness", Range{});
}

}  // namespace mgca::data
