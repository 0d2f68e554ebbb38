// mgca synth: a synthetic chest-radiograph dataset (docs/contract.md §5.3).
//
//   mgca synth --out data/synth/train --num 20000 --image-size 128
//   mgca synth --out data/synth/val --num 2000 --split val
//   mpirun -np 4 mgca synth --out DIR --num 100000     (each rank writes its block)
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>

#include "command.h"
#include "mgca/comm/communicator.h"
#include "mgca/data/dataset_output.h"
#include "mgca/data/synth.h"
#include "mgca/util/log.h"
#include "mgca/util/progress.h"
#include "mgca/util/timer.h"
#include "mgca/util/threads.h"

namespace mgca::cli {
namespace {

int run_synth(int argc, char** argv) {
  CLI::App app{"Generate a synthetic chest-radiograph dataset: images with findings placed by side "
               "and zone, template reports with negations, and labels.",
               "mgca synth"};
  std::string out;
  int64_t num = 0, shard_size = 4096;
  int threads = 0;
  bool overwrite = false;
  data::SynthOptions options;
  app.add_option("--out", out, "output dataset folder")->required();
  app.add_option("--num", num, "number of samples")->required()->check(positive_number());
  app.add_option("--image-size", options.image_size, "image side S in pixels")
      ->check(CLI::Range(32, 1024))->capture_default_str();
  app.add_option("--seed", options.seed, "generator seed")->capture_default_str();
  app.add_option("--split", options.split, "split name (part of every sample's key)")->capture_default_str();
  app.add_option("--prevalence", options.prevalence, "chance of each finding per image")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--lesion-scale", options.lesion_scale,
                 "radius multiplier of the focal lesions (consolidation, nodule); 1 = the default images")
      ->check(CLI::Range(0.0, 4.0))->capture_default_str();
  app.add_option("--shard-size", shard_size, "samples per shard file")
      ->check(positive_number())->capture_default_str();
  app.add_option("--threads", threads,
                 "generator threads per rank (default: $OMP_NUM_THREADS, else cores / ranks on the host)");
  app.add_flag("--overwrite", overwrite, "replace a dataset already in --out");
  if (const int code = parse_arguments(app, argc, argv); code >= 0) return code;

  comm::init(&argc, &argv);
  auto world = comm::Communicator::world();
  threads = util::choose_thread_count(threads, world->local_size());
  // Rank r generates the r-th contiguous block, so the dataset order is the
  // index order for any rank count.
  const auto [begin, end] = comm::block_of(num, world->rank(), world->size());

  nlohmann::json info = {{"command", "mgca synth"},
                         {"generator", {{"seed", options.seed}, {"split", options.split},
                                        {"prevalence", options.prevalence}, {"num", num}}}};
  // Recorded only when set, so the default datasets (and their digests) stay as they were.
  if (options.lesion_scale != 1.0) info["generator"]["lesion_scale"] = options.lesion_scale;
  data::OutputSpec spec;
  spec.dir = out;
  spec.source = "synth";
  spec.split = options.split;
  spec.image_size = options.image_size;
  spec.label_names = data::synth_label_names();
  spec.annotations = {true, true};  // lesion masks and boxes
  spec.shard_size = shard_size;
  spec.overwrite = overwrite;
  spec.info_json = info.dump();
  data::ParallelDatasetWriter writer(*world, spec);

  util::Stopwatch watch;
  util::Progress progress("synth", end - begin);
  const int64_t block = 32 * threads;
  std::vector<data::SynthSample> samples(static_cast<size_t>(block));
  for (int64_t first = begin; first < end; first += block) {
    const int64_t count = std::min(block, end - first);
    // Threads generate interleaved samples of the block; the writer takes them in order.
    util::parallel_for(threads, count, [&](int64_t k) {
      data::generate_synth_sample(options, first + k, samples[static_cast<size_t>(k)]);
    });
    for (int64_t k = 0; k < count; ++k) {
      const auto& s = samples[static_cast<size_t>(k)];
      const io::SampleAnnotation annotation{s.mask.data(), s.boxes};
      writer.append(s.id, s.report, s.image.data(), s.labels.data(), &annotation);
    }
    progress.update(first + count - begin);
  }
  data::ImportSummary summary;
  summary.imported = end - begin;
  summary = writer.finish(summary);
  const double seconds = watch.seconds();
  progress.finish();
  log::info("mgca synth: wrote {} samples ({} px, {} ranks x {} threads) to {} in {:.1f} s ({:.0f} images/s)",
            summary.imported, options.image_size, world->size(), threads, out, seconds,
            static_cast<double>(summary.imported) / std::max(seconds, 1e-9));
  return kExitOk;
}

const Registration synth_registration{"synth", "generate a synthetic chest-radiograph dataset", run_synth};

}  // namespace
}  // namespace mgca::cli
