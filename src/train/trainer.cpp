#include <fmt/ranges.h>
#include "mgca/train/trainer.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#include "mgca/comm/grad_sync.h"
#include "mgca/train/checkpoint.h"
#include "mgca/train/collective_error.h"
#include "mgca/train/optimizer.h"
#include "mgca/train/preemption.h"
#include "mgca/train/schedule.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"
#include "mgca/util/progress.h"
#include "mgca/util/timer.h"
#include "mgca/util/torch_compat.h"

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
  write_file_atomic(path, kept);
}

void sync_device(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace

// ---- device and threads ---------------------------------------------------------

torch::Device select_device(const Config& config, const comm::Communicator& comm) {
  const std::string& wanted = config.runtime.device;
  if (wanted == "cpu") return torch::kCPU;
  const bool has_cuda = torch::cuda::is_available();
  MGCA_CHECK(has_cuda || wanted != "cuda", "runtime.device = \"cuda\" but no GPU is visible on host {}",
             comm.host());
  if (!has_cuda) return torch::kCPU;
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(comm.local_rank() % count));
}

int select_threads(const Config& config, const comm::Communicator& comm) {
  if (config.runtime.threads > 0) return static_cast<int>(config.runtime.threads);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, comm.local_size()));
}

// ---- the trainer ----------------------------------------------------------------

struct Trainer::Impl {
  Config config;
  std::shared_ptr<comm::Communicator> comm;
  std::unique_ptr<Task> task;
  torch::Device device;
  NamedTensors params;
  std::unique_ptr<Adam> optimizer;
  std::unique_ptr<comm::GradSync> grad_sync;  // W > 1 with comm.overlap
  LrSchedule schedule;
  int64_t accumulate = 1;
  int64_t batches_per_epoch = 0;
  int64_t steps_per_epoch = 0;
  int64_t total_steps = 0;
  bool autocast = false;
  int64_t data_epoch = -1, data_batch = -1;  // where the task's data stands
  std::ofstream metrics;
  double train_seconds_before = 0;  // from the checkpoint we resumed
  util::Stopwatch run_watch;
  fs::path last_checkpoint;
  int64_t last_checkpoint_step = -1;

  Impl(Config c, std::shared_ptr<comm::Communicator> k, std::unique_ptr<Task> t, torch::Device d)
      : config(std::move(c)), comm(std::move(k)), task(std::move(t)), device(d) {
    for (const auto& item : task->module().named_parameters(true)) params.emplace_back(item.key(), item.value());
    const auto& o = config.optimizer;
    optimizer = std::make_unique<Adam>(
        params, AdamOptions{o.name == "adamw", o.betas.at(0), o.betas.at(1), o.eps, o.weight_decay, o.no_decay});
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
    if (comm->size() > 1 && config.comm.overlap) {
      comm::GradSyncOptions sync_options;
      sync_options.bucket_cap_mb = config.comm.bucket_mb;
      sync_options.wire_dtype = comm::parse_grad_dtype(config.comm.grad_dtype);
      grad_sync = std::make_unique<comm::GradSync>(params, comm, sync_options);
    }
    const std::string& ac = config.runtime.autocast;
    autocast = device.is_cuda() && (ac == "bf16" || ac == "auto") && config.runtime.dtype == "float32";
    if (ac == "bf16" && !device.is_cuda()) log::info("runtime.autocast = bf16 applies on GPU only; CPU runs in fp32");
  }

  // ---- start: fresh or from a checkpoint ----------------------------------

  void broadcast_initial_state() {
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : module_state(task->module())) {
      torch::Tensor t = tensor;
      comm->broadcast(t, 0);
    }
  }

  // Returns the step to continue from (0 for a fresh start).
  int64_t resume() {
    std::string chosen;
    if (comm->rank() == 0) {
      const std::string& resume = config.checkpoint.resume;
      if (resume == "auto") {
        if (auto newest = newest_checkpoint(config.checkpoint_dir())) chosen = newest->path.string();
      } else if (resume != "none") {
        chosen = resume;
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
    const fs::path path = chosen;
    std::string error;
    std::optional<RankState> state;
    try {
      load_module_state(task->module(), load_model_tensors(path), (path / "model.safetensors").string());
      optimizer->load_state_tensors(load_optimizer_tensors(path));
      state = load_rank_state(path, comm->rank());
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (comm->any(!error.empty())) {
      if (!error.empty()) MGCA_COLLECTIVE_FAIL(comm->rank() != 0, "cannot resume from {}: {}", path.string(), error);
      MGCA_COLLECTIVE_FAIL(true, "cannot resume from {}: failed on another rank", path.string());
    }
    int64_t step = 0;
    if (state) {
      step = state->step;
    } else {
      step = std::stoll(load_model_metadata(path).at("step"));
    }
    const double min_step = comm->all_reduce_scalar(static_cast<double>(step), comm::ReduceOp::Min);
    const double max_step = comm->all_reduce_scalar(static_cast<double>(step), comm::ReduceOp::Max);
    if (min_step != max_step) {
      MGCA_COLLECTIVE_FAIL(comm->rank() != 0, "checkpoint {}: ranks disagree on the step ({} to {})", path.string(),
                           min_step, max_step);
    }
    const bool same_world = state && state->world_size == comm->size() && state->rank == comm->rank();
    if (same_world) {
      set_generator_state(cpu_generator(), state->cpu_rng);
      if (device.is_cuda() && !state->cuda_rng.empty()) {
        set_generator_state(at::globalContext().defaultGenerator(device), state->cuda_rng);
      }
      train_seconds_before = state->train_seconds;
    }
    const bool all_same = !comm->any(!same_world);
    if (!all_same) {
      log::warn("checkpoint {} was written by {} ranks, this run has {}: the random generators restart from the "
                "seed (the data order stays the same), so the run is not bit-identical to an uninterrupted one",
                path.string(), state ? state->world_size : -1, comm->size());
      torch::manual_seed(static_cast<uint64_t>(config.seed) * 1000003ULL + static_cast<uint64_t>(comm->rank()));
    }
    if (comm->rank() == 0) truncate_metrics(config.run_dir() / "metrics.jsonl", step);
    last_checkpoint = path;
    last_checkpoint_step = step;
    log::info("resumed from {} at step {} of {}", path.string(), step, total_steps);
    return step;
  }

  // ---- checkpoints -----------------------------------------------------------

  void save(int64_t step) {
    CheckpointContent content;
    if (comm->rank() == 0) {
      content.model = module_state(task->module());
      content.optimizer = optimizer->state_tensors();
      content.metadata = task->metadata();
      content.metadata["format"] = "mgca-checkpoint";
      content.metadata["method"] = config.method;
      content.metadata["step"] = std::to_string(step);
      content.metadata["epoch"] = std::to_string(step / steps_per_epoch);
      content.metadata["total_steps"] = std::to_string(total_steps);
      // Nothing run-specific here (world size, paths): an interrupted and resumed run
      // writes a model.safetensors byte-identical to the uninterrupted run's.
      content.config_toml = to_toml(config);
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
    last_checkpoint = save_checkpoint(config.checkpoint_dir(), step, content, state, config.checkpoint.keep, *comm);
    last_checkpoint_step = step;
    log::info("checkpoint {} ({:.1f} s)", last_checkpoint.string(), watch.seconds());
  }

  // ---- gradient sync -----------------------------------------------------------

  // Without overlap (comm.overlap = false): averages the defined gradients
  // over ranks after backward, in buckets of about comm.bucket_mb (one flat
  // all-reduce per bucket). Every rank has the same set of defined gradients
  // (the same model and code path).
  void average_gradients() {
    if (comm->size() == 1) return;
    torch::NoGradGuard no_grad;
    const int64_t bucket_bytes = static_cast<int64_t>(config.comm.bucket_mb * 1024 * 1024);
    const bool wire_bf16 = comm::parse_grad_dtype(config.comm.grad_dtype) == comm::GradDtype::BFloat16;
    std::vector<torch::Tensor> bucket;
    int64_t bytes = 0;
    auto flush = [&] {
      if (bucket.empty()) return;
      std::vector<torch::Tensor> flat;
      for (const auto& g : bucket) flat.push_back(g.reshape({-1}));
      torch::Tensor buffer = torch::cat(flat);
      if (wire_bf16 && buffer.element_size() > 2) buffer = buffer.to(torch::kBFloat16);
      comm->all_reduce(buffer, comm::ReduceOp::Avg);
      int64_t offset = 0;
      for (auto& g : bucket) {
        g.copy_(buffer.narrow(0, offset, g.numel()).view(g.sizes()));
        offset += g.numel();
      }
      bucket.clear();
      bytes = 0;
    };
    for (auto& [name, param] : params) {
      torch::Tensor grad = param.grad();
      if (!grad.defined()) continue;
      if (!bucket.empty() && (bucket.front().scalar_type() != grad.scalar_type() ||
                              bytes + grad.numel() * grad.element_size() > bucket_bytes)) {
        flush();
      }
      bucket.push_back(grad);
      bytes += grad.numel() * grad.element_size();
    }
    flush();
  }

  // ---- one optimizer step ------------------------------------------------------

  struct StepTimes {
    double data = 0, forward = 0, backward = 0, comm = 0, optimizer = 0, total = 0;
  };

  void step_once(int64_t step, std::vector<std::string>& names, std::vector<double>& values, double& grad_norm,
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
      task->next_batch();
      ++data_batch;
      sync_device(device);
      times.data += watch.seconds();

      watch.restart();
      LossParts parts;
      {
        compat::CudaAutocastGuard autocast_guard(autocast, at::kBFloat16);
        parts = task->forward();
      }
      MGCA_CHECK(parts.total.defined() && parts.total.numel() == 1, "the task returned no scalar loss");
      sync_device(device);
      times.forward += watch.seconds();

      watch.restart();
      torch::Tensor loss = accumulate > 1 ? parts.total / static_cast<double>(accumulate) : parts.total;
      {
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
    if (grad_sync) {
      grad_sync->finalize();  // waits for the buckets launched during backward: the exposed communication
    } else {
      average_gradients();
    }
    sync_device(device);
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

    watch.restart();
    grad_norm = clip_grad_norm(params, config.optimizer.grad_clip_norm);
    if (config.runtime.check_finite && !std::isfinite(grad_norm)) {
      MGCA_COLLECTIVE_FAIL(comm->rank() != 0, "step {} (epoch {}): the gradient norm is {} although the loss is finite",
                           step + 1, epoch, grad_norm);
    }
    optimizer->step(lr);
    optimizer->zero_grad();
    sync_device(device);
    times.optimizer += watch.seconds();
    times.total = total_watch.seconds();
  }

  void write_metrics(int64_t step, int64_t epoch, double lr, const std::vector<std::string>& names,
                     const std::vector<double>& values, double grad_norm, const StepTimes& t) {
    if (comm->rank() != 0 || !metrics.is_open()) return;
    nlohmann::ordered_json line;
    line["step"] = step;
    line["epoch"] = epoch;
    line["lr"] = lr;
    for (size_t i = 0; i < names.size(); ++i) line[names[i]] = values[i];
    line["grad_norm"] = grad_norm;
    const double samples = static_cast<double>(comm->size() * task->batch_size() * accumulate);
    line["samples_per_s"] = t.total > 0 ? samples / t.total : 0.0;
    line["time_step_s"] = t.total;
    line["time_data_s"] = t.data;
    line["time_forward_s"] = t.forward;
    line["time_backward_s"] = t.backward;
    line["time_comm_s"] = t.comm;  // exposed (not overlapped with backward)
    line["time_optimizer_s"] = t.optimizer;
    const auto [rss, peak] = resident_memory_mb();
    line["mem_rss_mb"] = rss;
    line["mem_peak_rss_mb"] = peak;
    line["train_s"] = train_seconds_before + run_watch.seconds();
    metrics << line.dump() << "\n";
    metrics.flush();
  }

  RunResult run() {
    install_preemption_handlers();
    const int64_t start = resume();
    const int64_t stop = config.schedule.stop_after_steps > 0 ? std::min(config.schedule.stop_after_steps, total_steps)
                                                              : total_steps;
    if (comm->rank() == 0) {
      fs::create_directories(config.run_dir());
      write_file_atomic(config.run_dir() / "config.toml", to_toml(config));
      metrics.open(config.run_dir() / "metrics.jsonl", std::ios::app);
      MGCA_CHECK(metrics.good(), "cannot write {}", (config.run_dir() / "metrics.jsonl").string());
    }
    log::info("communication: {}{}", comm->describe(),
              grad_sync ? fmt::format("; gradients in {} buckets overlapping backward", grad_sync->buckets().size())
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
      if (comm->any(preemption_requested())) {
        result.signal = preemption_signal();
        log::info("preemption signal received: checkpointing at step {}", step);
        if (last_checkpoint_step != step) save(step);
        result.status = RunStatus::Preempted;
        result.step = step;
        result.checkpoint = last_checkpoint;
        progress.finish(fmt::format("preempted at step {}", step));
        return result;
      }
      if (step >= stop) break;
      double grad_norm = 0, lr = 0;
      StepTimes times;
      step_once(step, names, values, grad_norm, lr, times);
      ++step;
      if (step % config.logging.every_steps == 0 || step == stop) {
        write_metrics(step, (step - 1) / steps_per_epoch, lr, names, values, grad_norm, times);
      }
      std::string status;
      for (size_t i = 0; i < names.size() && i < 4; ++i) status += fmt::format("{} {:.4f} ", names[i], values[i]);
      progress.update(step, status + fmt::format("lr {:.2e}", lr));
      if (config.checkpoint.every_steps > 0 && step % config.checkpoint.every_steps == 0 && step < stop) save(step);
    }
    if (last_checkpoint_step != step) save(step);
    result.status = step >= total_steps ? RunStatus::Completed : RunStatus::Stopped;
    result.step = step;
    result.checkpoint = last_checkpoint;
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
