// Writing one dataset folder from many ranks (`mpirun -np K mgca prep|synth`),
// and the import summary every importer keeps.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mgca/io/dataset_file.h"

namespace mgca::comm {
class Communicator;
}

namespace mgca::data {

// What an import did: samples written, items skipped by reason (with the
// first few examples of each) and non-fatal conversions. Nothing is dropped
// without being counted here.
struct ImportSummary {
  int64_t imported = 0;
  std::map<std::string, int64_t> skipped;                    // reason → count
  std::map<std::string, std::vector<std::string>> examples;  // reason → up to 5 "item: detail"
  std::map<std::string, int64_t> notes;                      // e.g. "16-bit PNG scaled to 8 bits" → count

  void skip(const std::string& reason, const std::string& example);
  void note(const std::string& what) { ++notes[what]; }
  int64_t total_skipped() const;
  void merge(const ImportSummary& other);
  std::string to_json() const;
  static ImportSummary from_json(const std::string& text);
  // Human-readable lines: "imported N", then one line per reason with examples.
  std::string to_text() const;
};

struct OutputSpec {
  std::filesystem::path dir;  // the dataset folder (created)
  std::string source;
  std::string split;
  int64_t image_size = 256;
  std::vector<std::string> label_names;
  io::AnnotationKinds annotations;  // masks and/or boxes on every sample
  int64_t shard_size = 4096;  // samples per shard file
  bool overwrite = false;     // replace an existing dataset in dir
  std::string info_json = "{}";  // put under the manifest's "info" (with "summary" added)
};

// Every rank appends its own samples (rank r's shards are named
// "part-r<r>-<k>.h5"); finish() is collective: rank 0 lists the shards of
// rank 0, 1, ... in that order in dataset.json, so when rank r holds the r-th
// contiguous block of the input, the dataset order is the input order for any
// rank count. The folder must be on a file system every rank sees.
class ParallelDatasetWriter {
 public:
  // Collective. Rank 0 prepares the folder; an existing dataset there is an
  // error on every rank unless spec.overwrite.
  ParallelDatasetWriter(comm::Communicator& comm, OutputSpec spec);
  ~ParallelDatasetWriter();
  ParallelDatasetWriter(const ParallelDatasetWriter&) = delete;
  ParallelDatasetWriter& operator=(const ParallelDatasetWriter&) = delete;

  void append(std::string_view id, std::string_view report, const uint8_t* image,
              const float* labels = nullptr, const io::SampleAnnotation* annotation = nullptr);
  int64_t count() const;

  // Collective. Merges the ranks' summaries (the merged one is returned on
  // every rank) and writes dataset.json with it under info.summary. A split
  // with no samples on any rank leaves no folder behind.
  ImportSummary finish(const ImportSummary& rank_summary);

 private:
  comm::Communicator& comm_;
  OutputSpec spec_;
  std::unique_ptr<io::ShardedWriter> writer_;
};

}  // namespace mgca::data
