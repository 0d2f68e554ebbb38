// Small dataset folders for the eval tests, written with the data module's writer.
#pragma once

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/data/dataset_output.h"

namespace mgca::eval::testing {

struct SampleSpec {
  std::string report;
  std::vector<float> labels;
  std::vector<uint8_t> image;  // S*S
};

inline void write_dataset(const std::filesystem::path& dir, int64_t image_size,
                          const std::vector<std::string>& label_names, int64_t n,
                          const std::function<SampleSpec(int64_t)>& make,
                          const std::string& split = "test", int64_t shard_size = 4) {
  auto comm = comm::Communicator::single();
  data::OutputSpec spec;
  spec.dir = dir;
  spec.source = "evaltest";
  spec.split = split;
  spec.image_size = image_size;
  spec.label_names = label_names;
  spec.shard_size = shard_size;
  data::ParallelDatasetWriter writer(*comm, spec);
  for (int64_t i = 0; i < n; ++i) {
    const auto s = make(i);
    writer.append("sample-" + std::to_string(i), s.report, s.image.data(),
                  label_names.empty() ? nullptr : s.labels.data());
  }
  data::ImportSummary summary;
  summary.imported = n;
  writer.finish(summary);
}

}  // namespace mgca::eval::testing
