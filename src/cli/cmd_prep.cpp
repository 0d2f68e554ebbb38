// mgca prep: import a public chest X-ray dataset (docs/contract.md §5.2; docs/data-format.md).
//
//   mgca prep --format openi --in NLMCXR --out data/openi
//   mpirun -np 4 mgca prep --format mimic-cxr --in mimic-cxr-jpg --out data/mimic --threads 4
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>

#include "command.h"
#include "mgca/comm/communicator.h"
#include "mgca/data/import.h"
#include "mgca/util/log.h"
#include "mgca/util/timer.h"
#include "mgca/util/threads.h"

namespace mgca::cli {
namespace {

int run_prep(int argc, char** argv) {
  CLI::App app{"Import a chest X-ray dataset into the mgca format: one dataset per split in OUT/<split>/, "
               "the summary (imported, skipped by reason) in OUT/summary.json.",
               "mgca prep"};
  data::ImportOptions options;
  std::string in, out, labels, splits, reports;
  app.add_option("--format", options.format, "openi, mimic-cxr, csv, chexpert, rsna, object-cxr, siim or medmnist")
      ->required()
      ->check(CLI::IsMember({"openi", "mimic-cxr", "csv", "chexpert", "rsna", "object-cxr", "siim", "medmnist"}));
  app.add_option("--in", in, "the source folder (csv, medmnist: or the .csv / .npz file)")->required();
  app.add_option("--out", out, "output folder")->required();
  app.add_option("--image-size", options.image_size, "image side S after resizing and padding")
      ->check(CLI::Range(8, 4096))->capture_default_str();
  app.add_option("--shard-size", options.shard_size, "samples per shard file")
      ->check(positive_number())->capture_default_str();
  app.add_option("--threads", options.threads,
                 "decoding threads per rank (default: $OMP_NUM_THREADS, else cores / ranks on the host)");
  app.add_option("--split", options.only_split, "import only this split");
  app.add_option("--limit", options.limit, "import only the first N listed items");
  app.add_option("--random-split", options.random_split,
                 "for sources without splits: e.g. train=0.8,val=0.1,test=0.1 (by a hash of seed and id)");
  app.add_option("--seed", options.seed, "seed of --random-split")->capture_default_str();
  app.add_flag("!--all-views", options.frontal_only, "mimic-cxr, chexpert: keep lateral views too");
  app.add_option("--labels", labels, "openi: file2label.json (default: in --in)");
  app.add_option("--splits", splits, "openi: r2gen_annotation.json (default: in --in)");
  app.add_option("--reports", reports, "mimic-cxr: mimic_cxr_sectioned.csv[.gz] (default: in --in)");
  app.add_flag("--overwrite", options.overwrite, "replace datasets already in --out");
  double max_image_mb = static_cast<double>(options.max_image_bytes) / (1 << 20);
  app.add_option("--max-image-mb", max_image_mb, "image files larger than this are skipped (never read)")
      ->check(positive_number())->capture_default_str();
  comm::CommOptions comm_options;
  add_comm_timeout_option(app, comm_options.timeout_seconds);
  options.threads = 0;
  if (const int code = parse_arguments(app, argc, argv); code >= 0) return code;
  options.in = in;
  options.out = out;
  options.labels_file = labels;
  options.splits_file = splits;
  options.reports_file = reports;
  options.max_image_bytes = static_cast<uint64_t>(max_image_mb * (1 << 20));

  comm::init(&argc, &argv);
  auto world = comm::Communicator::world(comm_options);
  options.threads = util::choose_thread_count(options.threads, world->local_size());
  util::Stopwatch watch;
  data::ImportResult result;
  try {
    result = data::run_import(*world, options);
  } catch (const std::exception& error) {
    // Bad items are counted skips; what is left is a bad input (listing) or a
    // failure on one rank, which must not leave the others waiting.
    std::fprintf(stderr, "mgca prep: error: %s\n", error.what());
    abort_job(kExitError);
  }
  const double seconds = watch.seconds();
  for (const auto& [split, summary] : result.splits) {
    log::info("split {} -> {}: {}", split, (options.out / split).string(), summary.to_text());
  }
  log::info("mgca prep {}: {} ({} ranks x {} threads, {:.1f} s, {:.0f} images/s)\nsummary: {}",
            options.format, result.total.to_text(), world->size(), options.threads, seconds,
            static_cast<double>(result.total.imported) / std::max(seconds, 1e-9),
            (options.out / "summary.json").string());
  if (result.total.imported == 0) {
    log::error("mgca prep: nothing was imported from '{}'", in);
    return kExitError;
  }
  return kExitOk;
}

const Registration prep_registration{"prep", "import a chest X-ray dataset (openi, mimic-cxr, csv, chexpert, rsna, object-cxr, siim, medmnist)",
                                run_prep};

}  // namespace
}  // namespace mgca::cli
