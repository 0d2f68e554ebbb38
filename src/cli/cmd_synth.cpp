// mgca synth: a synthetic chest-radiograph dataset (docs/contract.md §5.3).
//
//   mgca synth --out data/synth/train --num 20000 --image-size 128
//   mgca synth --out data/synth/val --num 2000 --split val
//   mpirun -np 4 mgca synth --out DIR --num 100000     (each rank writes its block)
#include <CLI/CLI.hpp>

#include <algorithm>

#include "command.h"
#include "mgca/comm/communicator.h"
#include "mgca/comm/runtime.h"
#include "mgca/data/synth_dataset.h"
#include "mgca/util/log.h"
#include "mgca/util/timer.h"

namespace mgca::cli {
namespace {

int run_synth(int argc, char** argv) {
  CLI::App app{"Generate a synthetic chest-radiograph dataset: images with findings placed by side "
               "and zone, template reports with negations, and labels.",
               "mgca synth"};
  data::SynthDatasetOptions options;
  std::string out;
  app.add_option("--out", out, "output dataset folder")->required();
  app.add_option("--num", options.count, "number of samples")->required()->check(positive_number());
  app.add_option("--image-size", options.sample.image_size, "image side S in pixels")
      ->check(CLI::Range(32, 1024))->capture_default_str();
  app.add_option("--seed", options.sample.seed, "generator seed")->capture_default_str();
  app.add_option("--split", options.sample.split, "split name (part of every sample's key)")->capture_default_str();
  app.add_option("--prevalence", options.sample.prevalence, "chance of each finding per image")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--lesion-scale", options.sample.lesion_scale,
                 "radius multiplier of the focal lesions (consolidation, nodule); 1 = the default images")
      ->check(CLI::Range(0.0, 4.0))->capture_default_str();
  app.add_option("--shard-size", options.shard_size, "samples per shard file")
      ->check(positive_number())->capture_default_str();
  app.add_option("--threads", options.threads,
                 "generator threads per rank (default: $OMP_NUM_THREADS, else cores / ranks on the host)");
  app.add_flag("--overwrite", options.overwrite, "replace a dataset already in --out");
  if (const int code = parse_arguments(app, argc, argv); code >= 0) return code;
  options.out = out;

  comm::init(&argc, &argv);
  auto world = comm::Communicator::world();
  util::Stopwatch watch;
  const auto result = data::write_synth_dataset(*world, options);
  const double seconds = watch.seconds();
  log::info("mgca synth: wrote {} samples ({} px, {} ranks x {} threads) to {} in {:.1f} s ({:.0f} images/s)",
            result.summary.imported, options.sample.image_size, world->size(), result.threads, out, seconds,
            static_cast<double>(result.summary.imported) / std::max(seconds, 1e-9));
  return kExitOk;
}

const Registration synth_registration{"synth", "generate a synthetic chest-radiograph dataset", run_synth};

}  // namespace
}  // namespace mgca::cli
