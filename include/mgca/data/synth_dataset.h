// `mgca synth` as a function: a synthetic dataset (synth.h) generated and
// written by every rank in parallel.
#pragma once

#include <cstdint>
#include <filesystem>

#include "mgca/comm/communicator.h"
#include "mgca/data/dataset_output.h"
#include "mgca/data/synth.h"

namespace mgca::data {

struct SynthDatasetOptions {
  std::filesystem::path out;  // the dataset folder
  int64_t count = 0;          // samples 0 .. count − 1
  SynthOptions sample;
  int64_t shard_size = 4096;  // samples per shard file
  int threads = 0;            // generator threads per rank; 0: util::choose_thread_count's rule
  bool overwrite = false;     // replace a dataset already in `out`
};

struct SynthDatasetResult {
  ImportSummary summary;  // merged over the ranks
  int threads = 0;        // generator threads per rank, as chosen
};

// Collective: every rank passes the same options. Rank r generates the r-th
// contiguous block of the indices with its threads and writes it
// (ParallelDatasetWriter), so the dataset order is the index order for any
// rank count; source "synth", lesion masks and boxes on every sample, the
// generator's settings under the manifest's info. Progress on rank 0.
SynthDatasetResult write_synth_dataset(comm::Communicator& comm, const SynthDatasetOptions& options);

}  // namespace mgca::data
