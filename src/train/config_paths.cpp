// The files a job needs, checked on rank 0 before any training starts.
#include <fmt/format.h>

#include <filesystem>

#include "mgca/io/dataset_file.h"
#include "mgca/text/tokenizer.h"
#include "mgca/train/config.h"
#include "mgca/util/files.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"

namespace fs = std::filesystem;

namespace mgca::train {

void check_paths(const Config& config, int world_size) {
  const fs::path dataset = config.data.train;
  const std::string dataset_problem = util::folder_problem(dataset);
  MGCA_CHECK(dataset_problem.empty(), "data.train: dataset folder '{}' {}", dataset.string(), dataset_problem);
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
  const int64_t micro_batch = config.data.batch_size * world_size;
  MGCA_CHECK(micro_batch <= data->size(),
             "data.batch_size: {} ranks x {} samples = {} samples per micro-batch, more than the {} samples of "
             "dataset '{}'",
             world_size, config.data.batch_size, micro_batch, data->size(), dataset.string());
  MGCA_CHECK(config.model.image_size <= data->image_size(),
             "model.image_size: {}-pixel crops do not fit the {}-pixel images of dataset '{}'",
             config.model.image_size, data->image_size(), dataset.string());
  const std::string vocab_problem = util::file_problem(config.text.vocab);
  MGCA_CHECK(vocab_problem.empty(), "text.vocab: vocabulary file '{}' {}", config.text.vocab, vocab_problem);
  try {
    text::Tokenizer::from_vocab_file(config.text.vocab);
  } catch (const mgca::Error& error) {
    MGCA_FAIL("text.vocab: not a usable vocabulary: {}", error.message());
  }
  for (const auto& [key, path] : {std::pair{"model.image_weights", config.model.image_weights},
                                  std::pair{"model.text_weights", config.model.text_weights}}) {
    if (path.empty()) continue;
    const std::string problem = util::file_problem(path);
    MGCA_CHECK(problem.empty(), "{}: weight file '{}' {}", key, path, problem);
  }
  if (config.checkpoint.resume.mode == ResumeMode::Folder) {
    const std::string& resume = config.checkpoint.resume.folder;
    const std::string problem = util::folder_problem(resume);
    MGCA_CHECK(problem.empty(), "checkpoint.resume: checkpoint folder '{}' {}", resume, problem);
    MGCA_CHECK(fs::is_regular_file(fs::path(resume) / "DONE"),
               "checkpoint.resume: '{}' is not a complete checkpoint (no DONE marker)", resume);
  }
}

}  // namespace mgca::train
