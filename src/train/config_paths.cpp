// The files a job needs, checked on rank 0 before any training starts.
#include <fmt/format.h>

#include <filesystem>

#include "mgca/train/config.h"
#include "mgca/util/error.h"

namespace fs = std::filesystem;

namespace mgca::train {

void check_paths(const Config& config) {
  const fs::path dataset = config.data.train;
  MGCA_CHECK(fs::is_directory(dataset), "data.train: dataset folder '{}' does not exist", dataset.string());
  MGCA_CHECK(fs::is_regular_file(dataset / "dataset.json"),
             "data.train: '{}' is not a dataset folder (no dataset.json; make one with `mgca synth` or "
             "`mgca prep`)",
             dataset.string());
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
