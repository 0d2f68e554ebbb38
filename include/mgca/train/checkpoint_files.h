// Checkpoint folders on disk (layout in checkpoint.h): the per-rank state,
// listing, pruning and atomic files. No torch here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mgca::train {

// What one rank needs to continue bit for bit (no torch inside).
struct RankState {
  int64_t step = 0;            // optimizer steps completed
  int64_t epoch = 0;           // epoch of the next micro-batch
  int64_t batch_in_epoch = 0;  // micro-batches of that epoch already consumed (loader position)
  int64_t samples_seen = 0;    // global samples consumed so far
  int32_t rank = 0;
  int32_t world_size = 1;
  int64_t seed = 0;
  std::vector<uint8_t> cpu_rng;   // torch's default CPU generator state
  std::vector<uint8_t> cuda_rng;  // this rank's CUDA generator state (empty on CPU)
  double train_seconds = 0;       // wall time spent training before this checkpoint
};

// The file text: a line "mgca-rank-state sha256 <hex>" (the SHA-256 of what
// follows) and the Boost.Serialization text archive. Reading checks the
// checksum (a mismatch is an error naming `source`, the file); a file without
// the line (written before it existed) is read as the bare archive.
std::string serialize(const RankState& state);
RankState deserialize_rank_state(const std::string& file_text, const std::string& source);

struct CheckpointEntry {
  std::filesystem::path path;
  int64_t step = 0;
};

// "step-00001000".
std::string checkpoint_name(int64_t step);
// "step-00001000.tmp": the folder a checkpoint is written in before its rename.
std::string checkpoint_tmp_name(int64_t step);
// The step of a folder named checkpoint_tmp_name(step); -1 for any other name.
int64_t tmp_checkpoint_step(const std::string& folder_name);
// <folder>/DONE, written last: a folder holding it is complete.
std::filesystem::path checkpoint_done_file(const std::filesystem::path& checkpoint);
// The model file of a checkpoint folder (<folder>/model.safetensors); a path
// that is not a folder is taken as the model file itself.
std::filesystem::path checkpoint_model_file(const std::filesystem::path& checkpoint);
// <folder>/optimizer.safetensors.
std::filesystem::path checkpoint_optimizer_file(const std::filesystem::path& checkpoint);
// <folder>/rank-00003.state: the state rank 3 wrote.
std::filesystem::path checkpoint_rank_file(const std::filesystem::path& checkpoint, int rank);
// Its inverse on a file name: "rank-00003.state" → 3; -1 for any other name.
int checkpoint_rank_of(const std::string& file_name);
// Its inverse: "step-00001000" → 1000; -1 for any other folder name.
int64_t checkpoint_step(const std::string& folder_name);
// Complete checkpoints (folders step-N with DONE) under `dir`, oldest first.
// A missing `dir` gives an empty list.
std::vector<CheckpointEntry> complete_checkpoints(const std::filesystem::path& dir);
std::optional<CheckpointEntry> newest_checkpoint(const std::filesystem::path& dir);
// Removes all but the newest `keep` complete checkpoints and any *.tmp folder
// (a checkpoint whose writing was interrupted).
void prune_checkpoints(const std::filesystem::path& dir, int64_t keep);
// True when `path` is a complete checkpoint folder (has DONE).
bool is_complete_checkpoint(const std::filesystem::path& path);

}  // namespace mgca::train

namespace mgca::train::detail {
// A step of save_checkpoint: write the DONE marker (fsynced).
void mark_done(const std::filesystem::path& checkpoint);
}  // namespace mgca::train::detail
