#include <fmt/ranges.h>
#include "mgca/train/trainer.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <thread>

#include "mgca/build_config.h"
#include "mgca/comm/exact_grad.h"
#include "mgca/comm/grad_sync.h"
#include "mgca/train/checkpoint.h"
#include "mgca/comm/agreement.h"
#include "mgca/train/optimizer.h"
#include "mgca/train/preemption.h"
#include "mgca/train/rank_timing.h"
#include "mgca/train/schedule.h"
#include "mgca/train/spike_detector.h"
#include "mgca/util/error.h"
#include "mgca/util/files.h"
#include "mgca/util/log.h"
#include "mgca/util/nvtx.h"
#include "mgca/util/progress.h"
#include "mgca/util/tensorboard.h"
#include "mgca/util/timer.h"
#include "mgca/util/torch_compat.h"
#include "mgca/util/threads.h"

#if MGCA_TORCH_HAS_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace fs = std::filesystem;

namespace mgca::train {
namespace {

// ---- RNG states -------------------------------------------------------------

std::vector<uint8_t> generator_state(at::Generator generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  const at::Tensor state = generator.get_state().contiguous();
  const auto* data = state.data_ptr<uint8_t>();
  return std::vector<uint8_t>(data, data + state.numel());
}

void set_generator_state(at::Generator generator, const std::vector<uint8_t>& bytes) {
  at::Tensor state = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::copy(bytes.begin(), bytes.end(), state.data_ptr<uint8_t>());
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

at::Generator cpu_generator() { return at::globalContext().defaultGenerator(at::kCPU); }

// ---- memory -----------------------------------------------------------------

// VmRSS / VmHWM of this process in MiB (Linux /proc).
std::pair<double, double> resident_memory_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  double rss = 0, peak = 0;
  while (std::getline(status, line)) {
    auto value = [&](const char* key) {
      return std::stod(line.substr(std::string(key).size())) / 1024.0;  // kB → MiB
    };
    if (line.rfind("VmRSS:", 0) == 0) rss = value("VmRSS:");
    if (line.rfind("VmHWM:", 0) == 0) peak = value("VmHWM:");
  }
  return {rss, peak};
}

// ---- metrics.jsonl ----------------------------------------------------------

// Keeps the lines of steps <= `step` (a resumed run rewrites what the
// interrupted one logged after its checkpoint).
void truncate_metrics(const fs::path& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      if (nlohmann::json::parse(line).at("step").get<int64_t>() > step) continue;
    } catch (const std::exception&) {
      continue;  // a line cut short by a crash
    }
    kept += line + "\n";
  }
  in.close();
  util::write_file_atomic(path, kept);
}

void sync_device(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// ---- per-rank timing ------------------------------------------------------------

// Every rank's host name, in rank order. Collective.
std::vector<std::string> gather_hosts(comm::Communicator& comm) {
  constexpr int64_t kMax = 256;
  const std::string host = comm.host().substr(0, kMax - 1);
  torch::Tensor mine = torch::zeros({kMax}, torch::kUInt8);
  std::copy(host.begin(), host.end(), mine.data_ptr<uint8_t>());
  const torch::Tensor all = comm.all_gather(mine).contiguous();
  std::vector<std::string> hosts;
  const auto* bytes = reinterpret_cast<const char*>(all.data_ptr<uint8_t>());
  for (int r = 0; r < comm.size(); ++r) hosts.emplace_back(bytes + r * kMax);
  return hosts;
}

// Test-only: MGCA_TEST_SLOW_RANK="r:seconds" makes rank r sleep that long in
// the data phase of every micro-batch (the e2e straggler test). Read once;
// {-1, 0} when unset.
std::pair<int, double> test_slow_rank() {
  const char* text = std::getenv("MGCA_TEST_SLOW_RANK");
  if (text == nullptr || *text == '\0') return {-1, 0.0};
  const std::string value = text;
  const size_t colon = value.find(':');
  try {
    MGCA_CHECK(colon != std::string::npos, "no ':'");
    return {std::stoi(value.substr(0, colon)), std::stod(value.substr(colon + 1))};
  } catch (const std::exception&) {
    MGCA_FAIL("MGCA_TEST_SLOW_RANK = '{}': expected RANK:SECONDS (a test-only knob)", value);
  }
}

}  // namespace

// ---- device and threads ---------------------------------------------------------

torch::Device select_device(const Config& config, const comm::Communicator& comm) {
  const util::DeviceChoice wanted = config.runtime.device;
  if (wanted == util::DeviceChoice::Cpu) return torch::kCPU;
  const bool has_cuda = torch::cuda::is_available();
  MGCA_CHECK(has_cuda || wanted != util::DeviceChoice::Cuda,
             "runtime.device = \"cuda\" but no GPU is visible on host {}", comm.host());
  if (!has_cuda) return torch::kCPU;
  // The NCCL communicator's device when there is one (it checked that no two
  // ranks of a host share a GPU), else the same rule.
  const int count = static_cast<int>(torch::cuda::device_count());
  const int index = comm.device_index() >= 0 ? comm.device_index() : comm.local_rank() % count;
#if MGCA_TORCH_HAS_CUDA
  // Kernels, allocations and libraries' handles of this thread go to the
  // rank's own GPU (not cuda:0 of every rank).
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(index));
#endif
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void set_deterministic(const Config& config, torch::Device device) {
  if (!device.is_cuda() || !config.runtime.deterministic) return;
  // Read when cuBLAS creates its first handle: set before the first GEMM. A
  // value the user set stays (libtorch then rejects a non-deterministic one).
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  at::globalContext().setDeterministicCuDNN(true);
  at::globalContext().setBenchmarkCuDNN(false);
}

bool uses_autocast(const Config& config, torch::Device device) {
  // The batch-invariant mode needs full precision (explicit bf16 is refused
  // by the config), so there auto means none on GPU too.
  if (config.runtime.dtype != ComputeDtype::Float32 || config.runtime.batch_invariant) return false;
  const Autocast mode = config.runtime.autocast;
  return mode == Autocast::BFloat16 || (mode == Autocast::Auto && device.is_cuda());
}

torch::ScalarType scalar_type(ComputeDtype dtype) {
  return dtype == ComputeDtype::Float64 ? torch::kFloat64 : torch::kFloat32;
}

int select_threads(const Config& config, const comm::Communicator& comm) {
  return util::choose_thread_count(static_cast<int>(config.runtime.threads), comm.local_size());
}

// ---- the trainer ----------------------------------------------------------------

struct Trainer::Impl {
  Config config;
  std::shared_ptr<comm::Communicator> comm;
  std::unique_ptr<Task> task;
  torch::Device device;
  NamedTensors params;
  std::unique_ptr<Adam> optimizer;
  std::unique_ptr<comm::GradSync> grad_sync;  // W > 1
  LrSchedule schedule;
  int64_t accumulate = 1;
  int64_t batches_per_epoch = 0;
  int64_t steps_per_epoch = 0;
  int64_t total_steps = 0;
  bool autocast = false;
  int64_t data_epoch = -1, data_batch = -1;  // where the task's data stands
  std::ofstream metrics;
  std::unique_ptr<util::EventWriter> events;  // rank 0, logging.tensorboard
  std::vector<std::string> hosts;             // per rank, for the straggler warning
  StragglerDetector stragglers;
  std::pair<int, double> slow_rank;           // test-only: {rank, seconds of sleep per micro-batch}
  double train_seconds_before = 0;  // from the checkpoint we resumed
  util::Stopwatch run_watch;
  fs::path last_checkpoint;
  int64_t last_checkpoint_step = -1;
  std::unique_ptr<CheckpointWriter> writer;  // checkpoint.async
  std::unique_ptr<LossSpikeDetector> spikes;  // optimizer.spike_zscore > 0
  int64_t skipped_updates = 0;                // by the spike detector, over the whole run

  Impl(Config c, std::shared_ptr<comm::Communicator> k, std::unique_ptr<Task> t, torch::Device d)
      : config(std::move(c)),
        comm(std::move(k)),
        task(std::move(t)),
        device(d),
        stragglers(config.logging.straggler_factor, config.logging.straggler_intervals),
        slow_rank(test_slow_rank()) {
    for (const auto& item : task->module().named_parameters(true)) params.emplace_back(item.key(), item.value());
    const auto& o = config.optimizer;
    optimizer = std::make_unique<Adam>(
        params, AdamOptions{o.name == OptimizerKind::AdamW, o.betas.at(0), o.betas.at(1), o.eps, o.weight_decay, o.no_decay});
    accumulate = o.accumulate;
    const int64_t global_batch = comm->size() * task->batch_size();
    batches_per_epoch = task->dataset_size() / global_batch;
    steps_per_epoch = batches_per_epoch / accumulate;
    MGCA_CHECK(steps_per_epoch >= 1,
               "the dataset has {} samples: fewer than one optimizer step needs ({} ranks × batch {} × "
               "accumulate {} = {})",
               task->dataset_size(), comm->size(), task->batch_size(), accumulate, global_batch * accumulate);
    total_steps = config.schedule.max_steps > 0 ? config.schedule.max_steps
                                                : config.schedule.epochs * steps_per_epoch;
    schedule = LrSchedule::from_config(config.schedule, o.lr, total_steps);
    if (comm->size() > 1) {
      if (auto* shadows = task->grad_shadows()) {
        // runtime.batch_invariant: the float64 shadows, summed (each rank holds its share).
        comm::GradSyncOptions options = config.comm.gradients;
        options.sum = true;
        grad_sync = std::make_unique<comm::GradSync>(shadows->shadows(), comm, options);
      } else {
        grad_sync = std::make_unique<comm::GradSync>(params, comm, config.comm.gradients);
      }
    }
    autocast = uses_autocast(config, device);
    if (config.checkpoint.async) {
      writer = std::make_unique<CheckpointWriter>(config.checkpoint_dir(), config.checkpoint.keep,
                                                  comm->duplicate_for_host());
    }
    if (o.spike_zscore > 0) spikes = std::make_unique<LossSpikeDetector>(o.spike_window);
  }

  // ---- start: fresh or from a checkpoint ----------------------------------

  void broadcast_initial_state() {
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : module_state(task->module())) {
      torch::Tensor t = tensor;
      comm->broadcast(t, 0);
    }
  }

  // Loads the checkpoint at `path` on every rank; "" when every rank
  // succeeded, else this rank's error ("" on ranks that did not fail, which
  // then get `failed_elsewhere` set).
  std::string try_load(const fs::path& path, std::optional<RankState>& state, bool& failed_elsewhere) {
    std::string error;
    try {
      const auto model_tensors = load_model_tensors(path);
      load_module_state(task->module(), model_tensors, checkpoint_model_file(path).string());
      // Tensors of the checkpoint's model that this optimizer does not train
      // (frozen since, or a head bias folded into BatchNorm on load).
      std::set<std::string> untrained;
      for (const auto& entry : model_tensors) untrained.insert(entry.first);
      for (const auto& param : optimizer->parameters()) untrained.erase(param.first);
      const auto dropped = optimizer->load_state_tensors(load_optimizer_tensors(path), untrained);
      if (!dropped.empty() && comm->rank() == 0) {
        log::warn("checkpoint {}: dropped the optimizer state of {} tensor(s) this model does not train ({}); "
                  "the checkpoint predates their removal or freezing (docs/contract.md §2.6)",
                  path.string(), dropped.size(), fmt::join(dropped, ", "));
      }
      state = load_rank_state(path, comm->rank());
    } catch (const std::exception& e) {
      error = e.what();
    }
    failed_elsewhere = comm->any(!error.empty()) && error.empty();
    return error;
  }

  // Returns the step to continue from (0 for a fresh start).
  int64_t resume() {
    // Rank 0 lists the candidates, newest first: under "auto" every complete
    // checkpoint (an unreadable one falls back to the one before), else the one folder.
    std::string chosen;
    if (comm->rank() == 0) {
      const ResumeSetting& resume = config.checkpoint.resume;
      if (resume.mode == ResumeMode::Auto) {
        const auto all = complete_checkpoints(config.checkpoint_dir());
        for (auto it = all.rbegin(); it != all.rend(); ++it) chosen += it->path.string() + "\n";
      } else if (resume.mode == ResumeMode::Folder) {
        chosen = resume.folder + "\n";
      }
    }
    chosen = comm->broadcast_string(chosen, 0);
    if (chosen.empty()) {
      broadcast_initial_state();
      if (comm->rank() == 0) {
        fs::create_directories(config.run_dir());
        std::ofstream(config.run_dir() / "metrics.jsonl", std::ios::trunc);
      }
      return 0;
    }
    std::vector<fs::path> candidates;
    for (size_t begin = 0, end; (end = chosen.find('\n', begin)) != std::string::npos; begin = end + 1) {
      candidates.emplace_back(chosen.substr(begin, end - begin));
    }
    fs::path path;
    std::optional<RankState> state;
    for (size_t i = 0; i < candidates.size(); ++i) {
      path = candidates[i];
      state.reset();
      bool failed_elsewhere = false;
      const std::string error = try_load(path, state, failed_elsewhere);
      if (error.empty() && !failed_elsewhere) break;
      const bool last = i + 1 == candidates.size();
      if (last) {
        // Each failing rank prints its own cause; the others only echo it.
        if (!error.empty()) MGCA_COLLECTIVE_FAIL(false, "cannot resume from {}: {}", path.string(), error);
        MGCA_COLLECTIVE_FAIL(true, "cannot resume from {}: failed on another rank", path.string());
      }
      if (!error.empty()) log::warn("checkpoint {} is unreadable on this rank: {}", path.string(), error);
      if (comm->rank() == 0) {
        log::warn("resume = auto: checkpoint {} is unreadable; falling back to the previous complete checkpoint, {}",
                  path.string(), candidates[i + 1].string());
      }
    }
    int64_t step = 0;
    if (state) {
      step = state->step;
    } else {
      step = std::stoll(load_model_metadata(path).at("step"));
    }
    comm::check_ranks_agree(*comm, fmt::format("checkpoint {}: the step", path.string()), {step});
    // Nothing random during training depends on the rank or the world size
    // (data order, augmentations and dropout masks are keyed by the seed, the
    // step or epoch and the global sample index), and the loader position is
    // global (the step's micro-batches): on another W with the same global
    // batch the run continues the same trajectory. The generator states are
    // restored where the same rank wrote them, for anything else that draws.
    const bool same_world = state && state->world_size == comm->size() && state->rank == comm->rank();
    if (same_world) {
      set_generator_state(cpu_generator(), state->cpu_rng);
      if (device.is_cuda() && !state->cuda_rng.empty()) {
        set_generator_state(at::globalContext().defaultGenerator(device), state->cuda_rng);
      }
    }
    if (state) train_seconds_before = state->train_seconds;
    if (comm->rank() == 0 && state) log_resume_changes(path, state->world_size);
    if (spikes) restore_spike_detector(path);
    if (comm->rank() == 0) truncate_metrics(config.run_dir() / "metrics.jsonl", step);
    last_checkpoint = path;
    last_checkpoint_step = step;
    log::info("resumed from {} at step {} of {}", path.string(), step, total_steps);
    return step;
  }

  // Rank 0 (its state always exists and says how many ranks wrote the
  // checkpoint): what differs from the uninterrupted run, from the config
  // that wrote the checkpoint.
  void log_resume_changes(const fs::path& checkpoint, int world_before) {
    const fs::path file = checkpoint / "config.toml";
    std::vector<std::string> changes;
    try {
      const Config before = parse_config(util::read_file(file, "the checkpoint's config"), file.string());
      changes = resume_changes(before, world_before, config, comm->size());
    } catch (const mgca::Error& error) {
      log::warn("cannot compare the global batch with the run that wrote {}: {}", checkpoint.string(), error.message());
      return;
    }
    if (!changes.empty()) {
      log::warn("resuming {} (written at W = {}) at W = {} × batch {}: the run continues, but unlike the "
                "uninterrupted run these change: {}", checkpoint.string(), world_before, comm->size(),
                task->batch_size(), fmt::join(changes, "; "));
    } else if (world_before != comm->size()) {
      log::info("resuming {} (written at W = {}) at W = {} × batch {}: the same global batch, so the same "
                "trajectory", checkpoint.string(), world_before, comm->size(), task->batch_size());
    }
  }

  // The detector's window and count travel in the model's metadata (the same
  // on every rank: the loss it sees is the global mean).
  static constexpr const char* kSpikeWindowKey = "loss_spike_window";
  static constexpr const char* kSkippedKey = "skipped_updates";

  void restore_spike_detector(const fs::path& checkpoint) {
    const auto metadata = load_model_metadata(checkpoint);
    const auto window = metadata.find(kSpikeWindowKey);
    if (window == metadata.end()) {
      log::info("checkpoint {} has no loss spike window (written with optimizer.spike_zscore = 0): the detector "
                "starts empty", checkpoint.string());
      return;
    }
    spikes->restore(window->second, checkpoint_model_file(checkpoint).string());
    const auto skipped = metadata.find(kSkippedKey);
    if (skipped != metadata.end()) skipped_updates = std::stoll(skipped->second);
  }

  // ---- checkpoints -----------------------------------------------------------

  // Waits for a background write; returns the last complete checkpoint.
  fs::path finish_writes() {
    if (writer) {
      const fs::path written = writer->wait();
      if (!written.empty()) last_checkpoint = written;
    }
    return last_checkpoint;
  }

  void save(int64_t step) {
    util::ScopedRange range("checkpoint");
    CheckpointContent content;
    if (comm->rank() == 0) {
      content.model = module_state(task->module());
      content.optimizer = optimizer->state_tensors();
      content.metadata = task->metadata();
      content.metadata["format"] = "mgca-checkpoint";
      content.metadata["method"] = util::enum_name(config.method);
      content.metadata["step"] = std::to_string(step);
      content.metadata["epoch"] = std::to_string(step / steps_per_epoch);
      content.metadata["total_steps"] = std::to_string(total_steps);
      // Nothing run-specific here (world size, paths): an interrupted and resumed run
      // writes a model.safetensors byte-identical to the uninterrupted run's.
      content.config_toml = to_toml(config);
      if (spikes) {
        content.metadata[kSpikeWindowKey] = spikes->serialize();
        content.metadata[kSkippedKey] = std::to_string(skipped_updates);
      }
    }
    RankState state;
    state.step = step;
    state.epoch = step / steps_per_epoch;
    state.batch_in_epoch = (step % steps_per_epoch) * accumulate;
    state.samples_seen = step * accumulate * comm->size() * task->batch_size();
    state.rank = comm->rank();
    state.world_size = comm->size();
    state.seed = config.seed;
    state.cpu_rng = generator_state(cpu_generator());
    if (device.is_cuda()) state.cuda_rng = generator_state(at::globalContext().defaultGenerator(device));
    state.train_seconds = train_seconds_before + run_watch.seconds();
    util::Stopwatch watch;
    if (writer) {
      finish_writes();  // the previous write (submit would wait for it too): timed apart from the copy
      const double waited = watch.seconds();
      writer->submit(step, content, state);
      const double stalled = watch.seconds();
      log::info("checkpoint step {}: the step loop stalled {:.3f} s ({:.3f} s waiting for the previous write, {:.3f} s "
                "host copy); writing {} in the background",
                step, stalled, waited, stalled - waited, (config.checkpoint_dir() / checkpoint_name(step)).string());
    } else {
      last_checkpoint = save_checkpoint(config.checkpoint_dir(), step, content, state, config.checkpoint.keep, *comm);
      log::info("checkpoint step {}: the step loop stalled {:.3f} s (written synchronously to {})", step,
                watch.seconds(), last_checkpoint.string());
    }
    last_checkpoint_step = step;
  }

  // ---- gradient sync -----------------------------------------------------------

  // ---- one optimizer step ------------------------------------------------------

  struct StepTimes {
    double data = 0, forward = 0, backward = 0, comm = 0, optimizer = 0, total = 0;
  };

  // Returns the loss z-score of the spike detector (NaN when off or still filling).
  double step_once(int64_t step, std::vector<std::string>& names, std::vector<double>& values, double& grad_norm,
                   double& lr, StepTimes& times) {
    util::Stopwatch total_watch;
    const int64_t epoch = step / steps_per_epoch;
    const int64_t first_batch = (step % steps_per_epoch) * accumulate;
    if (data_epoch != epoch || data_batch != first_batch) task->seek(epoch, first_batch);
    data_epoch = epoch;
    data_batch = first_batch;
    task->before_step(epoch);
    lr = schedule.at(step);

    std::vector<torch::Tensor> sums;
    for (int64_t micro = 0; micro < accumulate; ++micro) {
      util::Stopwatch watch;
      {
        util::ScopedRange range("data");
        task->next_batch();
        ++data_batch;
        if (slow_rank.first == comm->rank()) {
          std::this_thread::sleep_for(std::chrono::duration<double>(slow_rank.second));
        }
        sync_device(device);
      }
      times.data += watch.seconds();

      watch.restart();
      LossParts parts;
      {
        util::ScopedRange range("forward");
        compat::AutocastGuard autocast_guard(autocast, device.type(), at::kBFloat16);
        parts = task->forward();
      }
      MGCA_CHECK(parts.total.defined() && parts.total.numel() == 1, "the task returned no scalar loss");
      sync_device(device);
      times.forward += watch.seconds();

      watch.restart();
      torch::Tensor loss = accumulate > 1 ? parts.total / static_cast<double>(accumulate) : parts.total;
      {
        util::ScopedRange range("backward");
        // Gradient sync only on the last micro-batch: the others accumulate locally.
        const bool last_micro = micro + 1 == accumulate;
        auto no_sync = grad_sync && !last_micro ? grad_sync->no_sync() : comm::GradSync::NoSync();
        // Parameters this loss cannot reach (unused branches) get their bucket
        // slots filled now, so their buckets launch during backward instead of
        // waiting for finalize(). The prototypes of the frozen epoch do get a
        // gradient here: it is synced, then dropped by task->after_backward()
        // on every rank alike.
        if (grad_sync && last_micro) grad_sync->prepare_for_backward({loss});
        loss.backward();
      }
      sync_device(device);
      times.backward += watch.seconds();

      if (micro == 0) {
        names.clear();
        for (const auto& [name, value] : parts.parts) {
          names.push_back(name);
          sums.push_back(value.detach().to(torch::kFloat64).reshape({}));
        }
      } else {
        MGCA_CHECK(parts.parts.size() == names.size(), "the task returned a different set of loss parts");
        for (size_t i = 0; i < sums.size(); ++i) sums[i] = sums[i] + parts.parts[i].second.detach().to(torch::kFloat64);
      }
    }

    util::Stopwatch watch;
    {
      util::ScopedRange range("grad_sync_wait");
      // Waits for the buckets launched during backward (all of them without
      // comm.overlap): the exposed communication.
      if (grad_sync) grad_sync->finalize();
      if (auto* shadows = task->grad_shadows()) shadows->write_gradients();
      sync_device(device);
    }
    times.comm += watch.seconds();

    task->after_backward(epoch);

    // Loss parts: mean over micro-batches, then over ranks (= the global-batch value).
    torch::Tensor packed = sums.empty() ? torch::zeros({0}, torch::kFloat64)
                                        : (torch::stack(sums) / static_cast<double>(accumulate)).to(torch::kCPU);
    comm->all_reduce(packed, comm::ReduceOp::Avg);
    values.assign(packed.data_ptr<double>(), packed.data_ptr<double>() + packed.numel());
    if (config.runtime.check_finite) {
      // Name the components first and the total ("loss") last.
      std::vector<std::string> bad;
      for (int pass = 0; pass < 2; ++pass) {
        for (size_t i = 0; i < names.size(); ++i) {
          if (names[i].rfind("loss", 0) != 0 || std::isfinite(values[i]) || (names[i] == "loss") != (pass == 1)) {
            continue;
          }
          bad.push_back(fmt::format("loss part '{}' is {}", names[i], values[i]));
        }
      }
      if (!bad.empty()) {
        MGCA_COLLECTIVE_FAIL(comm->rank() != 0,
                             "step {} (epoch {}): {} (mean over ranks); the weights of the last checkpoint are "
                             "intact: lower optimizer.lr, set optimizer.grad_clip_norm, or check the data",
                             step + 1, epoch, fmt::join(bad, ", "));
      }
    }

    double zscore = std::numeric_limits<double>::quiet_NaN();
    bool skip_update = false;
    if (spikes) {
      const auto loss = std::find(names.begin(), names.end(), "loss");
      MGCA_CHECK(loss != names.end(), "optimizer.spike_zscore: the task reports no loss part named 'loss'");
      // The global loss, equal on every rank: every rank decides alike.
      zscore = spikes->update(values[static_cast<size_t>(loss - names.begin())]);
      skip_update = zscore > config.optimizer.spike_zscore;
      if (skip_update) {
        ++skipped_updates;
        log::info("step {}: loss {:.6g} is {:.2f} standard deviations above the mean of the last {} losses "
                  "(optimizer.spike_zscore = {:g}): update skipped ({} so far)",
                  step + 1, values[static_cast<size_t>(loss - names.begin())], zscore, config.optimizer.spike_window,
                  config.optimizer.spike_zscore, skipped_updates);
      }
    }

    watch.restart();
    util::ScopedRange optimizer_range("optimizer");
    grad_norm = clip_grad_norm(params, config.optimizer.grad_clip_norm);
    if (config.runtime.check_finite && !std::isfinite(grad_norm)) {
      MGCA_COLLECTIVE_FAIL(comm->rank() != 0, "step {} (epoch {}): the gradient norm is {} although the loss is finite",
                           step + 1, epoch, grad_norm);
    }
    if (!skip_update) optimizer->step(lr);
    optimizer->zero_grad();
    if (auto* shadows = task->grad_shadows()) shadows->zero_grad();
    sync_device(device);
    times.optimizer += watch.seconds();
    times.total = total_watch.seconds();
    return zscore;
  }

  // ---- per-rank timing and metrics ----------------------------------------------

  struct RankTimes {
    RankSpread step, data, comm;
  };

  // The spread over ranks of this step's times, and the straggler warning
  // (rank 0 prints it). Collective: every rank calls it at the same steps.
  RankTimes gather_rank_times(int64_t step, const StepTimes& t) {
    const torch::Tensor mine = torch::tensor(std::vector<double>{t.total, t.data, t.comm}, torch::kFloat64);
    const torch::Tensor all = comm->all_gather(mine).contiguous();  // [W * 3], rank-major
    const double* p = all.data_ptr<double>();
    std::vector<double> step_s, data_s, comm_s;
    for (int r = 0; r < comm->size(); ++r) {
      step_s.push_back(p[3 * r]);
      data_s.push_back(p[3 * r + 1]);
      comm_s.push_back(p[3 * r + 2]);
    }
    RankTimes times{rank_spread(step_s), rank_spread(data_s), rank_spread(comm_s)};
    const auto report = stragglers.update(step_s, data_s);
    if (report.rank >= 0 && comm->rank() == 0) {
      const auto r = static_cast<size_t>(report.rank);
      log::warn("straggler: rank {} on host {} has been behind for {} logged intervals in a row (step {}): step "
                "{:.3f} s, data {:.3f} s; the median over {} ranks: step {:.3f} s, data {:.3f} s; it slows the "
                "step {:.2f} times (logging.straggler_factor = {:g})",
                report.rank, hosts.at(r), report.intervals, step, step_s[r], data_s[r], comm->size(),
                times.step.median, times.data.median, report.ratio, config.logging.straggler_factor);
    }
    return times;
  }

  void write_metrics(int64_t step, int64_t epoch, double lr, const std::vector<std::string>& names,
                     const std::vector<double>& values, double grad_norm, double zscore, const StepTimes& t,
                     const RankTimes& ranks) {
    if (comm->rank() != 0 || !metrics.is_open()) return;
    nlohmann::ordered_json line;
    line["step"] = step;
    line["epoch"] = epoch;
    line["lr"] = lr;
    for (size_t i = 0; i < names.size(); ++i) line[names[i]] = values[i];
    line["grad_norm"] = grad_norm;
    if (spikes) {
      if (std::isfinite(zscore)) {
        line["loss_zscore"] = zscore;
      } else {
        line["loss_zscore"] = nullptr;  // the window is still filling
      }
      line["skipped_updates"] = skipped_updates;
    }
    const double samples = static_cast<double>(comm->size() * task->batch_size() * accumulate);
    line["samples_per_s"] = t.total > 0 ? samples / t.total : 0.0;
    line["time_step_s"] = t.total;
    line["time_data_s"] = t.data;
    line["time_forward_s"] = t.forward;
    line["time_backward_s"] = t.backward;
    line["time_comm_s"] = t.comm;  // exposed (not overlapped with backward)
    line["time_optimizer_s"] = t.optimizer;
    const std::pair<const char*, const RankSpread*> spreads[] = {
        {"step", &ranks.step}, {"data", &ranks.data}, {"comm", &ranks.comm}};
    for (const auto& [what, spread] : spreads) {
      const std::string prefix = std::string("ranks_") + what;
      line[prefix + "_s_min"] = spread->min;
      line[prefix + "_s_median"] = spread->median;
      line[prefix + "_s_max"] = spread->max;
      line[prefix + "_slowest"] = spread->slowest;
    }
    const auto [rss, peak] = resident_memory_mb();
    line["mem_rss_mb"] = rss;
    line["mem_peak_rss_mb"] = peak;
    line["train_s"] = train_seconds_before + run_watch.seconds();
    metrics << line.dump() << "\n";
    metrics.flush();
    if (events) {
      // The same numbers under the same names (null: not written).
      std::vector<std::pair<std::string, double>> scalars;
      for (auto it = line.begin(); it != line.end(); ++it) {
        if (it.key() != "step" && it->is_number()) scalars.emplace_back(it.key(), it->get<double>());
      }
      events->write_scalars(step, scalars);
    }
  }

  // rank 0: the events file of this run in <run>/tb/. A fresh start removes
  // the old files (as metrics.jsonl starts empty); a resumed one first writes
  // a SessionLog START at step start + 1, which makes TensorBoard drop the
  // steps after the checkpoint that an earlier run logged (as metrics.jsonl
  // is truncated to them).
  void open_events(int64_t start) {
    const fs::path folder = config.run_dir() / "tb";
    if (start == 0) util::remove_event_files(folder);
    events = std::make_unique<util::EventWriter>(folder, comm->host());
    if (start > 0) events->write_session_start(start + 1);
  }

  RunResult run() {
    install_preemption_handlers();
    const int64_t start = resume();
    const int64_t stop = config.schedule.stop_after_steps > 0 ? std::min(config.schedule.stop_after_steps, total_steps)
                                                              : total_steps;
    if (comm->rank() == 0) {
      fs::create_directories(config.run_dir());
      util::write_file_atomic(config.run_dir() / "config.toml", to_toml(config));
      metrics.open(config.run_dir() / "metrics.jsonl", std::ios::app);
      MGCA_CHECK(metrics.good(), "cannot write {}", (config.run_dir() / "metrics.jsonl").string());
      if (config.logging.tensorboard) open_events(start);
    }
    hosts = gather_hosts(*comm);
    if (slow_rank.first == comm->rank()) {
      log::warn("MGCA_TEST_SLOW_RANK: this rank sleeps {} s in the data phase of every micro-batch (a test-only knob)",
                slow_rank.second);
    }
    log::info("communication: {}{}", comm->describe(),
              grad_sync ? fmt::format("; gradients in {} buckets {}", grad_sync->buckets().size(),
                                      config.comm.gradients.overlap ? "overlapping backward" : "after backward")
                        : "");
    log::info("{}: {} ranks × batch {} × accumulate {} = {} samples per step; {} steps per epoch, {} steps{}",
              config.name, comm->size(), task->batch_size(), accumulate,
              comm->size() * task->batch_size() * accumulate, steps_per_epoch, total_steps,
              stop < total_steps ? fmt::format(" (this run stops after {})", stop) : "");

    RunResult result;
    result.total_steps = total_steps;
    util::Progress progress("train", total_steps, start, config.logging.progress_interval_s);
    int64_t step = start;
    std::vector<std::string> names;
    std::vector<double> values;
    while (true) {
      // One agreement per step covers both: a signal, or a background write
      // that failed (its error is rethrown by finish_writes on every rank).
      const bool write_failed = writer && writer->failed();
      if (comm->any(preemption_requested() || write_failed)) {
        if (writer && comm->any(write_failed)) finish_writes();
        result.signal = preemption_signal();
        log::info("preemption signal received: checkpointing at step {}", step);
        if (last_checkpoint_step != step) save(step);
        result.status = RunStatus::Preempted;
        result.step = step;
        result.checkpoint = finish_writes();
        progress.finish(fmt::format("preempted at step {}", step));
        return result;
      }
      if (step >= stop) break;
      double grad_norm = 0, lr = 0;
      StepTimes times;
      const double zscore = step_once(step, names, values, grad_norm, lr, times);
      ++step;
      if (step % config.logging.every_steps == 0 || step == stop) {
        const RankTimes ranks = gather_rank_times(step, times);
        write_metrics(step, (step - 1) / steps_per_epoch, lr, names, values, grad_norm, zscore, times, ranks);
      }
      std::string status;
      for (size_t i = 0; i < names.size() && i < 4; ++i) status += fmt::format("{} {:.4f} ", names[i], values[i]);
      progress.update(step, status + fmt::format("lr {:.2e}", lr));
      if (config.checkpoint.every_steps > 0 && step % config.checkpoint.every_steps == 0 && step < stop) save(step);
    }
    if (last_checkpoint_step != step) save(step);
    result.status = step >= total_steps ? RunStatus::Completed : RunStatus::Stopped;
    result.step = step;
    result.checkpoint = finish_writes();
    progress.finish(result.status == RunStatus::Completed ? "done" : fmt::format("stopped after step {}", step));
    return result;
  }
};

Trainer::Trainer(Config config, std::shared_ptr<comm::Communicator> comm, std::unique_ptr<Task> task,
                 torch::Device device)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(comm), std::move(task), device)) {}

Trainer::~Trainer() = default;

RunResult Trainer::run() { return impl_->run(); }
int64_t Trainer::steps_per_epoch() const { return impl_->steps_per_epoch; }
int64_t Trainer::total_steps() const { return impl_->total_steps; }
Task& Trainer::task() { return *impl_->task; }

}  // namespace mgca::train
