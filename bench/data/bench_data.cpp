// Data pipeline throughput: synthetic generation, augmentation alone, the
// loader (read + augment + tokenise) per worker thread at 224 px for the MGCA
// and ConVIRT pipelines, import (decode + resize + write), and the cost of
// opening a dataset with its checksums verified. Prints one
// JSON object; bench/reference/data_torchvision.py measures torchvision on the
// same images and augmentations for the side-by-side ratio.
//
//   bench_data [--seconds 2] [--threads 1,2] [--work DIR] [--keep]
//
// --work DIR keeps the synthetic dataset in DIR/synth256 for the torchvision
// script (default: a temporary folder, removed at exit unless --keep).
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mgca/build_config.h"
#include "mgca/comm/communicator.h"
#include "mgca/data/augment.h"
#include "mgca/data/dataset_output.h"
#include "mgca/data/import.h"
#include "mgca/data/loader.h"
#include "mgca/data/synth.h"
#include "mgca/util/error.h"
#include "mgca/util/timer.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace mgca;

namespace {

// Runs `body(i)` for at least `seconds` (after one warm-up call); returns calls per second.
template <typename Body>
double rate(double seconds, Body&& body) {
  body(0);
  util::Stopwatch watch;
  int64_t calls = 0;
  while (watch.seconds() < seconds) body(++calls);
  return static_cast<double>(calls) / watch.seconds();
}

fs::path shared_data() {
  const char* env = std::getenv("MGCA_SHARED_DATA");
  return env ? fs::path(env) : fs::path(MGCA_SHARED_DATA_DIR_DEFAULT);
}

void write_synth(const fs::path& dir, int64_t n, int64_t S) {
  if (fs::exists(dir / io::kManifestFileName)) return;
  auto single = comm::Communicator::single();
  data::OutputSpec spec;
  spec.dir = dir;
  spec.source = "synth";
  spec.split = "train";
  spec.image_size = S;
  spec.label_names = data::synth_label_names();
  spec.overwrite = true;
  data::ParallelDatasetWriter writer(*single, spec);
  data::SynthOptions options;
  options.image_size = S;
  data::SynthSample sample;
  for (int64_t i = 0; i < n; ++i) {
    data::generate_synth_sample(options, i, sample);
    writer.append(sample.id, sample.report, sample.image.data(), sample.labels.data());
  }
  writer.finish({});
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2.0;
  std::vector<int> thread_counts = {1, 2};
  fs::path work;
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      MGCA_CHECK(i + 1 < argc, "bench_data: {} needs a value", a);
      return argv[++i];
    };
    if (a == "--seconds") {
      seconds = std::stod(value());
    } else if (a == "--threads") {
      thread_counts.clear();
      std::stringstream list(value());
      for (std::string t; std::getline(list, t, ',');) thread_counts.push_back(std::stoi(t));
    } else if (a == "--work") {
      work = value();
      keep = true;
    } else if (a == "--keep") {
      keep = true;
    } else {
      std::cerr << "usage: bench_data [--seconds 2] [--threads 1,2] [--work DIR] [--keep]\n";
      return 2;
    }
  }
  if (work.empty()) work = fs::temp_directory_path() / fmt::format("mgca-bench-data-{}", getpid());
  fs::create_directories(work);
  json result = {{"benchmark", "data"}, {"seconds_per_figure", seconds}, {"work", work.string()}};

  // Synthetic generation, one thread.
  data::SynthSample sample;
  for (const int64_t S : {64, 128, 256}) {
    data::SynthOptions options;
    options.image_size = S;
    const double r = rate(seconds, [&](int64_t i) { data::generate_synth_sample(options, i, sample); });
    result["synth"][fmt::format("{}px_images_per_s", S)] = r;
  }
  {
    // Generation + shard writing (HDF5, Fletcher32, SHA-256 at close), 128 px.
    const fs::path dir = work / "synth-write";
    fs::remove_all(dir);
    util::Stopwatch watch;
    write_synth(dir, 2000, 128);
    result["synth"]["128px_write_images_per_s"] = 2000.0 / watch.seconds();
  }

  // The loader's dataset: 256 px as MGCA stores images.
  const fs::path synth256 = work / "synth256";
  write_synth(synth256, 1024, 256);
  {
    // Opening it: the metadata alone, then with the shards' sizes and SHA-256
    // checked against the manifest (what the commands do; reads every byte).
    int64_t bytes = 0;
    for (const auto& shard : io::read_manifest(synth256).shards) bytes += shard.bytes;
    util::Stopwatch watch;
    io::Dataset::open(synth256, {.verify_checksums = false});
    const double plain = watch.seconds();
    watch.restart();
    io::Dataset::open(synth256, {.verify_checksums = true});
    const double verified = watch.seconds();
    result["dataset_open"] = {{"megabytes", static_cast<double>(bytes) / 1e6},
                              {"seconds_metadata_only", plain},
                              {"seconds_verified", verified},
                              {"verify_megabytes_per_s", static_cast<double>(bytes) / 1e6 / (verified - plain)}};
  }
  auto dataset = io::Dataset::open(synth256, {.verify_checksums = false});
  auto tokenizer = std::make_shared<text::Tokenizer>(
      text::Tokenizer::from_vocab_file(shared_data() / "vocab/bert-base-cased-vocab.txt"));

  // Augmentation alone, one thread, 256 -> 224.
  std::vector<uint8_t> pixels(256 * 256);
  std::vector<float> out(224 * 224);
  for (const auto pipeline : {data::Pipeline::Mgca, data::Pipeline::Convirt}) {
    data::AugmentOptions options;
    options.pipeline = pipeline;
    const double r = rate(seconds, [&](int64_t i) {
      dataset->read_image(i % dataset->size(), pixels.data());
      util::Rng rng(util::make_key({0, static_cast<uint64_t>(i)}));
      data::augment_image(options, pixels.data(), 256, rng, out.data());
    });
    result["augment"][data::pipeline_name(pipeline)]["read_augment_images_per_s"] = r;
  }
  {
    std::string report = dataset->report(0);
    std::replace(report.begin(), report.end(), '\n', ' ');
    result["tokenize_per_s"] = rate(seconds, [&](int64_t) { tokenizer->encode(report, 112); });
  }

  // The loader: batches of 64 through worker threads.
  for (const auto pipeline : {data::Pipeline::Mgca, data::Pipeline::Convirt}) {
    for (const int threads : thread_counts) {
      data::LoaderOptions options;
      options.global_batch_size = 64;
      options.augment.pipeline = pipeline;
      options.text = pipeline == data::Pipeline::Convirt ? data::TextMode::SampleSentence : data::TextMode::Full;
      options.num_threads = threads;
      options.prefetch = 2 * threads + 1;
      data::Loader loader(dataset, tokenizer, options);
      int64_t epoch = 0, images = 0;
      loader.start(epoch);
      loader.next();  // warm-up
      util::Stopwatch watch;
      while (watch.seconds() < seconds) {
        auto batch = loader.next();
        if (!batch) {
          loader.start(++epoch);
          continue;
        }
        images += batch->size();
      }
      const double r = static_cast<double>(images) / watch.seconds();
      auto& entry = result["loader"][data::pipeline_name(pipeline)][fmt::format("threads_{}", threads)];
      entry["images_per_s"] = r;
      entry["images_per_s_per_thread"] = r / threads;
    }
  }

  // Import: a CSV tree of the real sample images (JPEG 1036x885 and 512x512
  // PNGs), decoded, resized to 256 and written, one thread.
  {
    const fs::path tree = work / "import-tree";
    fs::create_directories(tree);
    const std::vector<std::string> files = {"16747_3_1.jpg", "nih-00000001_000.png", "tbx11k-tb0005.png"};
    std::string table = "image_path,report\n";
    const int copies = 40;
    for (int c = 0; c < copies; ++c) {
      for (const auto& file : files) {
        const std::string name = fmt::format("{}-{}", c, file);
        if (!fs::exists(tree / name)) fs::copy_file(shared_data() / "cxr-samples" / file, tree / name);
        table += fmt::format("{},\"Heart size is normal. The lungs are clear. No effusion.\"\n", name);
      }
    }
    std::ofstream(tree / "table.csv") << table;
    auto single = comm::Communicator::single();
    for (const int threads : thread_counts) {
      data::ImportOptions options;
      options.format = "csv";
      options.in = tree / "table.csv";
      options.out = work / fmt::format("import-out-{}", threads);
      options.overwrite = true;
      options.threads = threads;
      util::Stopwatch watch;
      const auto imported = data::run_import(*single, options);
      const double r = static_cast<double>(imported.total.imported) / watch.seconds();
      auto& entry = result["import"][fmt::format("threads_{}", threads)];
      entry["images_per_s"] = r;
      entry["images_per_s_per_thread"] = r / threads;
    }
    result["import"]["images"] = "1036x885 JPEG, 512x512 gray PNG, 512x512 RGB PNG -> 256 px";
  }

  std::cout << result.dump(2) << std::endl;
  if (!keep) fs::remove_all(work);
  return 0;
}
