// Checkpoint folders on disk: listing, pruning, atomic files, and the
// per-rank state archive (Boost.Serialization). No torch here (Boost's
// compile definitions must stay out of the torch precompiled header).
#include "mgca/train/checkpoint_files.h"

#include <fmt/format.h>

#include <boost/archive/text_iarchive.hpp>
#include <boost/archive/text_oarchive.hpp>
#include <boost/serialization/vector.hpp>

#include <algorithm>
#include <sstream>
#include <string_view>

#include "mgca/io/dataset_file.h"
#include "mgca/util/error.h"
#include "mgca/util/files.h"

namespace fs = std::filesystem;

namespace mgca::train {
namespace {

constexpr unsigned kRankStateVersion = 1;
constexpr const char* kDoneFile = "DONE";
constexpr const char* kTmpSuffix = ".tmp";

bool has_tmp_suffix(const std::string& name) {
  const size_t n = std::char_traits<char>::length(kTmpSuffix);
  return name.size() > n && name.compare(name.size() - n, n, kTmpSuffix) == 0;
}
// First line of a rank state file: this tag and the SHA-256 of the archive
// after the line. Files from before the checksum start with the archive.
constexpr std::string_view kRankStateTag = "mgca-rank-state sha256 ";

template <typename Archive, typename State>
void visit(Archive& archive, State& s) {
  archive& s.step& s.epoch& s.batch_in_epoch& s.samples_seen& s.rank& s.world_size& s.seed& s.cpu_rng& s.cuda_rng&
      s.train_seconds;
}

// Reads what Boost writes for a std::vector<uint8_t> (count, item version,
// elements), refusing a count the text cannot hold: Boost's own loader
// reserves whatever a garbled count says (found by fuzz_rank_state).
void load_bytes(boost::archive::text_iarchive& archive, std::vector<uint8_t>& bytes, size_t text_size,
                const std::string& source) {
  boost::serialization::collection_size_type count;
  boost::serialization::item_version_type item_version(0);
  archive >> count >> item_version;
  MGCA_CHECK(static_cast<size_t>(count) <= text_size,
             "'{}': not a readable rank state (a vector of {} bytes in {} bytes of text); the file is corrupt",
             source, static_cast<size_t>(count), text_size);
  bytes.resize(count);
  for (auto& byte : bytes) archive >> byte;
}

}  // namespace

std::string serialize(const RankState& state) {
  std::ostringstream out;
  {
    boost::archive::text_oarchive archive(out);
    unsigned version = kRankStateVersion;
    archive << version;
    RankState copy = state;
    visit(archive, copy);
  }
  const std::string body = out.str();
  return fmt::format("{}{}\n{}", kRankStateTag, io::sha256_hex(body.data(), body.size()), body);
}

RankState deserialize_rank_state(const std::string& file_text, const std::string& source) {
  std::string text = file_text;
  if (file_text.compare(0, kRankStateTag.size(), kRankStateTag) == 0) {
    const size_t line_end = file_text.find('\n');
    MGCA_CHECK(line_end != std::string::npos, "'{}': truncated rank state (no archive after the checksum line)",
               source);
    const std::string stored = file_text.substr(kRankStateTag.size(), line_end - kRankStateTag.size());
    text = file_text.substr(line_end + 1);
    const std::string actual = io::sha256_hex(text.data(), text.size());
    MGCA_CHECK(stored == actual,
               "'{}': checksum mismatch (stored sha256 {}, content {}): the rank state is corrupt; resume from "
               "an older checkpoint",
               source, stored, actual);
  }
  // Boost would first allocate a string of the signature's stated length
  // (a garbled digit asks for petabytes; found by fuzz_rank_state).
  MGCA_CHECK(text.compare(0, 26, "22 serialization::archive ") == 0,
             "'{}': not a readable rank state (no Boost text archive signature); the file is corrupt", source);
  RankState state;
  try {
    std::istringstream in(text);
    boost::archive::text_iarchive archive(in);
    unsigned version = 0;
    archive >> version;
    MGCA_CHECK(version == kRankStateVersion, "{}: rank state version {} (this build reads {})", source, version,
               kRankStateVersion);
    archive >> state.step >> state.epoch >> state.batch_in_epoch >> state.samples_seen >> state.rank >>
        state.world_size >> state.seed;  // visit()'s order
    load_bytes(archive, state.cpu_rng, text.size(), source);
    load_bytes(archive, state.cuda_rng, text.size(), source);
    archive >> state.train_seconds;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {  // archive errors, and bad_alloc or length_error from a garbled size
    MGCA_FAIL("'{}': not a readable rank state ({}); the file is corrupt", source, error.what());
  }
  MGCA_CHECK(state.step >= 0 && state.epoch >= 0 && state.batch_in_epoch >= 0 && state.rank >= 0 &&
                 state.world_size > state.rank,
             "'{}': not a valid rank state (step {}, rank {} of {}); the file is corrupt", source, state.step,
             state.rank, state.world_size);
  return state;
}

std::string checkpoint_name(int64_t step) { return fmt::format("step-{:08d}", step); }

fs::path checkpoint_model_file(const fs::path& checkpoint) {
  return fs::is_directory(checkpoint) ? checkpoint / "model.safetensors" : checkpoint;
}

fs::path checkpoint_optimizer_file(const fs::path& checkpoint) { return checkpoint / "optimizer.safetensors"; }

bool is_complete_checkpoint(const fs::path& path) {
  std::error_code ignored;
  return fs::is_regular_file(checkpoint_done_file(path), ignored);
}

fs::path checkpoint_rank_file(const fs::path& checkpoint, int rank) {
  return checkpoint / fmt::format("rank-{:05d}.state", rank);
}

int checkpoint_rank_of(const std::string& file_name) {
  constexpr std::string_view prefix = "rank-", suffix = ".state";
  if (file_name.size() <= prefix.size() + suffix.size() || file_name.compare(0, prefix.size(), prefix) != 0 ||
      file_name.compare(file_name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return -1;
  }
  int64_t rank = 0;
  for (size_t i = prefix.size(); i < file_name.size() - suffix.size(); ++i) {
    if (file_name[i] < '0' || file_name[i] > '9' || rank > (1 << 30)) return -1;
    rank = rank * 10 + (file_name[i] - '0');
  }
  return static_cast<int>(rank);
}

int64_t checkpoint_step(const std::string& folder_name) {
  if (folder_name.size() < 6 || folder_name.compare(0, 5, "step-") != 0) return -1;
  int64_t step = 0;
  for (size_t i = 5; i < folder_name.size(); ++i) {
    if (folder_name[i] < '0' || folder_name[i] > '9') return -1;
    step = step * 10 + (folder_name[i] - '0');
  }
  return step;
}

std::string checkpoint_tmp_name(int64_t step) { return checkpoint_name(step) + kTmpSuffix; }

int64_t tmp_checkpoint_step(const std::string& folder_name) {
  if (!has_tmp_suffix(folder_name)) return -1;
  return checkpoint_step(folder_name.substr(0, folder_name.size() - std::char_traits<char>::length(kTmpSuffix)));
}

fs::path checkpoint_done_file(const fs::path& checkpoint) { return checkpoint / kDoneFile; }

std::vector<CheckpointEntry> complete_checkpoints(const fs::path& dir) {
  std::vector<CheckpointEntry> found;
  std::error_code error;
  if (!fs::is_directory(dir, error)) return found;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const int64_t step = checkpoint_step(entry.path().filename().string());
    if (step < 0 || !entry.is_directory() || !is_complete_checkpoint(entry.path())) continue;
    found.push_back(CheckpointEntry{entry.path(), step});
  }
  MGCA_CHECK(!error, "cannot list checkpoint folder '{}': {}", dir.string(), error.message());
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return found;
}

std::optional<CheckpointEntry> newest_checkpoint(const fs::path& dir) {
  auto all = complete_checkpoints(dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

void prune_checkpoints(const fs::path& dir, int64_t keep) {
  const auto all = complete_checkpoints(dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove_all(all[i].path);
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && has_tmp_suffix(name) && name.rfind("step-", 0) == 0) {
      fs::remove_all(entry.path());
    }
  }
}

namespace detail {
// Used by save_checkpoint (checkpoint.cpp): the step that needs no torch.
void mark_done(const fs::path& checkpoint) {
  util::write_file_atomic(checkpoint_done_file(checkpoint), "complete\n");
  util::fsync_path(checkpoint.parent_path());
}
}  // namespace detail

}  // namespace mgca::train
