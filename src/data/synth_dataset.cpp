#include "mgca/data/synth_dataset.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <vector>

#include "mgca/comm/types.h"
#include "mgca/util/progress.h"
#include "mgca/util/threads.h"

namespace mgca::data {

SynthDatasetResult write_synth_dataset(comm::Communicator& comm, const SynthDatasetOptions& options) {
  SynthDatasetResult result;
  result.threads = util::choose_thread_count(options.threads, comm.local_size());
  const auto [begin, end] = comm::block_of(options.count, comm.rank(), comm.size());
  const SynthOptions& sample_options = options.sample;

  nlohmann::json info = {{"command", "mgca synth"},
                         {"generator", {{"seed", sample_options.seed}, {"split", sample_options.split},
                                        {"prevalence", sample_options.prevalence}, {"num", options.count}}}};
  // Recorded only when set, so the default datasets (and their digests) stay as they were.
  if (sample_options.lesion_scale != 1.0) info["generator"]["lesion_scale"] = sample_options.lesion_scale;
  OutputSpec spec;
  spec.dir = options.out;
  spec.source = "synth";
  spec.split = sample_options.split;
  spec.image_size = sample_options.image_size;
  spec.label_names = synth_label_names();
  spec.annotations = {true, true};  // lesion masks and boxes
  spec.shard_size = options.shard_size;
  spec.overwrite = options.overwrite;
  spec.info_json = info.dump();
  ParallelDatasetWriter writer(comm, spec);

  util::Progress progress("synth", end - begin);
  const int64_t block = 32 * result.threads;
  std::vector<SynthSample> samples(static_cast<size_t>(block));
  for (int64_t first = begin; first < end; first += block) {
    const int64_t count = std::min(block, end - first);
    // Threads generate interleaved samples of the block; the writer takes them in order.
    util::parallel_for(result.threads, count, [&](int64_t k) {
      generate_synth_sample(sample_options, first + k, samples[static_cast<size_t>(k)]);
    });
    for (int64_t k = 0; k < count; ++k) {
      const auto& s = samples[static_cast<size_t>(k)];
      const io::SampleAnnotation annotation{s.mask.data(), s.boxes};
      writer.append(s.id, s.report, s.image.data(), s.labels.data(), &annotation);
    }
    progress.update(first + count - begin);
  }
  ImportSummary summary;
  summary.imported = end - begin;
  result.summary = writer.finish(summary);
  progress.finish();
  return result;
}

}  // namespace mgca::data
