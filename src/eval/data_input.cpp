#include "mgca/eval/data_input.h"

#include "mgca/util/error.h"

namespace fs = std::filesystem;

namespace mgca::eval {

EvalSplit::EvalSplit(const fs::path& dir, std::string role) : dir_(dir), role_(std::move(role)) {
  MGCA_CHECK(fs::is_regular_file(dir / io::kManifestFileName),
             "{} split: {} is not a dataset folder (no {})", role_, dir.string(),
             io::kManifestFileName);
  dataset_ = io::Dataset::open(dir);
  digest_ = io::sha256_file(dir / io::kManifestFileName);
}

Matrix EvalSplit::labels() const {
  MGCA_CHECK(dataset_->has_labels(), "{} split {}: the dataset has no labels", role_, dir_.string());
  const int64_t n = size(), l = dataset_->num_labels();
  Matrix out(n, l);
  for (int64_t i = 0; i < n; ++i) {
    const float* row = dataset_->labels(i);
    for (int64_t c = 0; c < l; ++c) out.at(i, c) = static_cast<double>(row[c]);
  }
  return out;
}

std::vector<std::string> EvalSplit::reports(int64_t begin, int64_t count) const {
  MGCA_CHECK(begin >= 0 && count >= 0 && begin + count <= size(),
             "{} split: reports [{}, {}) outside [0, {})", role_, begin, begin + count, size());
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(count));
  for (int64_t i = begin; i < begin + count; ++i) out.push_back(dataset_->report(i));
  return out;
}

std::vector<uint8_t> EvalSplit::images(int64_t begin, int64_t count) const {
  MGCA_CHECK(begin >= 0 && count >= 0 && begin + count <= size(),
             "{} split: images [{}, {}) outside [0, {})", role_, begin, begin + count, size());
  const int64_t pixels = image_size() * image_size();
  std::vector<uint8_t> out(static_cast<size_t>(count * pixels));
  for (int64_t i = 0; i < count; ++i) dataset_->read_image(begin + i, out.data() + i * pixels);
  return out;
}

SplitPaths resolve_splits(const fs::path& data, const fs::path& train, const fs::path& val,
                          const fs::path& test) {
  auto pick = [&](const fs::path& explicit_path, std::initializer_list<const char*> names) -> fs::path {
    if (!explicit_path.empty()) return explicit_path;
    if (data.empty()) return {};
    for (const char* name : names) {
      if (fs::is_regular_file(data / name / io::kManifestFileName)) return data / name;
    }
    return {};
  };
  SplitPaths out;
  out.train = pick(train, {"train"});
  // "validate": MIMIC-CXR's split name, kept by `mgca prep mimic-cxr`.
  out.val = pick(val, {"val", "valid", "validation", "validate"});
  out.test = pick(test, {"test"});
  return out;
}

}  // namespace mgca::eval
