#include "mgca/train/checkpoint.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "mgca/comm/agreement.h"
#include "mgca/io/safetensors.h"
#include "mgca/model/weights.h"
#include "mgca/util/error.h"
#include "mgca/util/files.h"

namespace fs = std::filesystem;

namespace mgca::train {

fs::path save_checkpoint(const fs::path& dir, int64_t step, const CheckpointContent& content,
                         const RankState& state, int64_t keep, comm::Communicator& comm) {
  const fs::path final_path = dir / checkpoint_name(step);
  const fs::path tmp = dir / checkpoint_tmp_name(step);
  comm::run_on_every_rank(comm, "checkpoint: preparing the folder", [&] {
    if (comm.rank() != 0) return;
    fs::create_directories(dir);
    fs::remove_all(tmp);
    fs::create_directory(tmp);
  });
  comm::run_on_every_rank(comm, "checkpoint: writing", [&] {
    util::write_file_atomic(checkpoint_rank_file(tmp, comm.rank()), serialize(state));
    if (comm.rank() != 0) return;
    io::save_safetensors(checkpoint_model_file(tmp), content.model, content.metadata);
    io::save_safetensors(checkpoint_optimizer_file(tmp), content.optimizer, {{"format", "mgca-optimizer-state"}});
    util::write_file_atomic(tmp / "config.toml", content.config_toml);
  });
  comm::run_on_every_rank(comm, "checkpoint: completing", [&] {
    if (comm.rank() != 0) return;
    util::fsync_path(tmp);
    if (fs::exists(final_path)) fs::remove_all(final_path);  // the same step saved again (a resumed run)
    fs::rename(tmp, final_path);
    util::fsync_path(dir);
    detail::mark_done(final_path);
    prune_checkpoints(dir, keep);
  });
  return final_path;
}

// ---- asynchronous writes ------------------------------------------------------

namespace {

// Copies `from` into `into`, reusing its host buffers when names and shapes
// agree (no fresh pages per snapshot). Device tensors go to pinned memory.
bool copy_to_host(const NamedTensors& from, NamedTensors& into) {
  bool reuse = into.size() == from.size();
  for (size_t i = 0; reuse && i < from.size(); ++i) {
    reuse = into[i].first == from[i].first && into[i].second.sizes() == from[i].second.sizes() &&
            into[i].second.scalar_type() == from[i].second.scalar_type();
  }
  if (!reuse) {
    into.clear();
    for (const auto& [name, tensor] : from) {
      into.emplace_back(name, torch::empty(tensor.sizes(), tensor.options().device(torch::kCPU).pinned_memory(
                                                                tensor.is_cuda())));
    }
  }
  bool any_device = false;
  for (size_t i = 0; i < from.size(); ++i) {
    any_device = any_device || from[i].second.is_cuda();
    into[i].second.copy_(from[i].second.detach(), /*non_blocking=*/from[i].second.is_cuda());
  }
  return any_device;
}

}  // namespace

CheckpointWriter::CheckpointWriter(fs::path dir, int64_t keep, std::shared_ptr<comm::Communicator> comm)
    : dir_(std::move(dir)), keep_(keep), comm_(std::move(comm)) {}

CheckpointWriter::~CheckpointWriter() {
  if (thread_.joinable()) thread_.join();
}

void CheckpointWriter::submit(int64_t step, const CheckpointContent& content, const RankState& state) {
  wait();
  torch::NoGradGuard no_grad;
  const bool model_on_device = copy_to_host(content.model, snapshot_.model);
  const bool optimizer_on_device = copy_to_host(content.optimizer, snapshot_.optimizer);
  if (model_on_device || optimizer_on_device) torch::cuda::synchronize();  // the pinned copies have landed
  snapshot_.metadata = content.metadata;
  snapshot_.config_toml = content.config_toml;
  state_ = state;
  failed_ = false;
  thread_ = std::thread([this, step] {
    try {
      written_ = save_checkpoint(dir_, step, snapshot_, state_, keep_, *comm_);
    } catch (...) {
      error_ = std::current_exception();
      failed_ = true;
    }
  });
}

fs::path CheckpointWriter::wait() {
  if (thread_.joinable()) thread_.join();
  if (error_) {
    std::exception_ptr error = error_;
    error_ = nullptr;
    std::rethrow_exception(error);
  }
  return written_;
}

std::map<std::string, torch::Tensor> load_model_tensors(const fs::path& checkpoint) {
  return io::load_safetensors(checkpoint_model_file(checkpoint));
}

std::map<std::string, std::string> load_model_metadata(const fs::path& checkpoint) {
  return io::SafetensorsFile(checkpoint_model_file(checkpoint)).metadata();
}

std::map<std::string, torch::Tensor> load_optimizer_tensors(const fs::path& checkpoint) {
  return io::load_safetensors(checkpoint_optimizer_file(checkpoint));
}

std::optional<RankState> load_rank_state(const fs::path& checkpoint, int rank) {
  const fs::path first_path = checkpoint_rank_file(checkpoint, 0);
  MGCA_CHECK(fs::is_regular_file(first_path), "checkpoint '{}': rank 0's state '{}' is missing", checkpoint.string(),
             first_path.string());
  const RankState first = deserialize_rank_state(util::read_file(first_path), first_path.string());
  MGCA_CHECK(first.rank == 0 && first.world_size >= 1, "'{}': holds the state of rank {} of {}, not rank 0's",
             first_path.string(), first.rank, first.world_size);
  if (rank >= first.world_size) return std::nullopt;  // the checkpoint was written by fewer ranks
  if (rank == 0) return first;
  const fs::path path = checkpoint_rank_file(checkpoint, rank);
  MGCA_CHECK(fs::is_regular_file(path), "checkpoint '{}' was written by {} ranks but the state of rank {}, '{}', is missing",
             checkpoint.string(), first.world_size, rank, path.string());
  RankState state = deserialize_rank_state(util::read_file(path), path.string());
  MGCA_CHECK(state.rank == rank && state.world_size == first.world_size && state.step == first.step,
             "'{}' (rank {}): holds rank {} of {} at step {}, rank 0's state says {} ranks at step {}", path.string(),
             rank, state.rank, state.world_size, state.step, first.world_size, first.step);
  return state;
}

NamedTensors module_state(const torch::nn::Module& module) {
  NamedTensors out;
  for (auto& [name, tensor] : model::state_tensors(module)) out.emplace_back(name, tensor.detach());
  return out;
}

void load_module_state(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                       const std::string& source) {
  model::LoadOptions options;
  options.format = model::WeightFormat::Ours;
  options.interpolate_positions = false;
  options.same_dtype = true;
  model::load_weights(module, tensors, options, source);
}

}  // namespace mgca::train
