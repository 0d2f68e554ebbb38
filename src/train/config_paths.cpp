// The files a job needs, checked on rank 0 before any training starts.
#include <fmt/format.h>

#include <filesystem>

#include "mgca/io/dataset_file.h"
#include "mgca/train/config.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"

namespace fs = std::filesystem;

namespace mgca::train {

void check_paths(const Config& config) {
  const fs::path dataset = config.data.train;
  MGCA_CHECK(fs::is_directory(dataset), "data.train: dataset folder '{}' does not exist", dataset.string());
  MGCA_CHECK(fs::is_regular_file(dataset / "dataset.json"),
             "data.train: '{}' is not a dataset folder (no dataset.json; make one with `mgca synth` or "
             "`mgca prep`)",
             dataset.string());
  std::shared_ptr<io::Dataset> data;
  try {
    data = io::Dataset::open(dataset);
  } catch (const mgca::Error& error) {
    MGCA_FAIL("data.train: cannot open dataset '{}': {}", dataset.string(), error.message());
  }
  MGCA_CHECK(data->size() > 0, "data.train: dataset '{}' has no samples", dataset.string());
  int64_t with_report = 0;
  for (int64_t i = 0; i < data->size(); ++i) with_report += data->report(i).empty() ? 0 : 1;
  MGCA_CHECK(with_report > 0,
             "data.train: dataset '{}' (source \"{}\", {} samples) has no reports: pretraining needs image-report "
             "pairs (a classification set like this one is for `mgca eval`)",
             dataset.string(), data->manifest().source, data->size());
  if (with_report < data->size()) {
    log::warn("data.train: {} of {} samples of '{}' have an empty report", data->size() - with_report, data->size(),
              dataset.string());
  }
  MGCA_CHECK(fs::is_regular_file(config.text.vocab), "text.vocab: vocabulary file '{}' does not exist",
             config.text.vocab);
  for (const auto& [key, path] : {std::pair{"model.image_weights", config.model.image_weights},
                                  std::pair{"model.text_weights", config.model.text_weights}}) {
    if (path.empty()) continue;
    MGCA_CHECK(fs::is_regular_file(path), "{}: weight file '{}' does not exist", key, path);
  }
  const std::string& resume = config.checkpoint.resume;
  if (resume != "auto" && resume != "none") {
    MGCA_CHECK(fs::is_directory(resume), "checkpoint.resume: checkpoint folder '{}' does not exist", resume);
    MGCA_CHECK(fs::is_regular_file(fs::path(resume) / "DONE"),
               "checkpoint.resume: '{}' is not a complete checkpoint (no DONE marker)", resume);
  }
}

}  // namespace mgca::train
