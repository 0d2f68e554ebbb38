// Reading a dataset split for evaluation (no torch): labels as a host
// matrix, reports, raw images, and the digest that keys the feature cache.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mgca/eval/labels.h"
#include "mgca/io/dataset_file.h"

namespace mgca::eval {

class EvalSplit {
 public:
  // Opens the dataset folder; `role` ("train", "val", "test") names it in errors.
  EvalSplit(const std::filesystem::path& dir, std::string role);

  const std::filesystem::path& dir() const { return dir_; }
  const std::string& role() const { return role_; }
  const io::Dataset& dataset() const { return *dataset_; }
  int64_t size() const { return dataset_->size(); }
  int64_t image_size() const { return dataset_->image_size(); }
  const std::vector<std::string>& label_names() const { return dataset_->manifest().label_names; }
  // SHA-256 of dataset.json: it lists every shard's SHA-256, so it changes
  // whenever any sample does.
  const std::string& digest() const { return digest_; }

  // Labels [n, L] as stored (1/0/−1/NaN); error naming the folder when the
  // dataset has none.
  Matrix labels() const;
  // Stored reports (sentences joined by '\n'), samples [begin, begin + count).
  std::vector<std::string> reports(int64_t begin, int64_t count) const;
  // Images [begin, begin + count) as count·S·S bytes, row-major.
  std::vector<uint8_t> images(int64_t begin, int64_t count) const;

 private:
  std::filesystem::path dir_;
  std::string role_;
  std::shared_ptr<io::Dataset> dataset_;
  std::string digest_;
};

// Split folders: explicit paths win; otherwise `data`/train, `data`/val (or
// valid, validation, validate: the first that exists), `data`/test. The result has train/val/test entries;
// an entry is empty when the split does not exist (the caller decides
// whether it needs it).
struct SplitPaths {
  std::filesystem::path train, val, test;
};
SplitPaths resolve_splits(const std::filesystem::path& data, const std::filesystem::path& train,
                          const std::filesystem::path& val, const std::filesystem::path& test);

}  // namespace mgca::eval
