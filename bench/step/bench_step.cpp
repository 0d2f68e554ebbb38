// bench_step: our MGCA train step on fixed synthetic inputs, timed.
//
//   [mpirun -np W --bind-to none] bench_step --job JOB.toml [--set key=value ...]
//       [--batch b] [--threads T] [--warmup N] [--steps N] [--inputs FILE]
//       [--json OUT] [--dump DIR] [--profile TRACE.json]
//
// The step is `mgca train`'s: train::make_task (the MGCA model, objectives,
// prototype normalization and gradient drop) and train::Trainer (forward,
// backward, gradient sync, clipping, AdamW, metrics.jsonl), seeded as
// train::run_training seeds them. Only the data differ: batches come from a
// safetensors file (images [n,1,H,W] f32, input_ids / attention_mask [n,L]
// i64: what bench/reference/mgca_step.py --write-inputs writes, so that both
// sides see the same inputs) instead of the loader, so "data" time is a
// slice of tensors already in memory. The file is split into global batches
// of W·b samples, rank r taking its b-slice of each, cycled; one pass is one
// epoch.
//
// The JSON (rank 0) has per-step records — the trainer's time split (data,
// forward, backward, comm = its gradient sync, optimizer), comm_calls (time
// inside every communicator call: SyncBatchNorm, ITA, Sinkhorn, gradient
// sync, the trainer's reductions), CPU time and page faults of the process —
// their medians over the timed steps, samples/s per rank and the peak RSS.
// One step more than asked is run and dropped: its end includes the final
// checkpoint.
//
// --dump DIR (one rank) writes what `mgca_step.py --check DIR` needs to
// compare the reference with this run: initial.safetensors (the model
// before the first step), inputs.safetensors and metrics.jsonl.
//
// --profile TRACE.json (rank 0) runs the first timed step under the autograd
// profiler and writes its chrome trace (op names, CPU times, shapes); the
// profiler slows that step, so use it for the breakdown, not the figures.
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench_task.h"
#include "mgca/comm/communicator.h"
#include "mgca/comm/runtime.h"
#include "mgca/io/safetensors.h"
#include "mgca/train/config.h"
#include "mgca/train/run.h"
#include "mgca/train/trainer.h"
#include "mgca/util/error.h"
#include "mgca/util/host_memory.h"
#include "mgca/util/rng.h"
#include "mgca/util/torch_compat.h"
#include "timed_communicator.h"

namespace fs = std::filesystem;
using namespace mgca;

namespace {

struct Args {
  std::string job;
  std::vector<std::string> sets;
  int64_t batch = 0, threads = 0, warmup = 2, steps = 5;
  std::string inputs, json, dump, profile;
};

[[noreturn]] void usage(const std::string& error) {
  std::cerr << "bench_step: " << error
            << "\nusage: bench_step --job JOB.toml [--set key=value ...] [--batch b] [--threads T] [--warmup N]"
               " [--steps N] [--inputs FILE] [--json OUT] [--dump DIR] [--profile TRACE.json]\n";
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(k + " needs a value");
      return argv[++i];
    };
    auto integer = [&](int64_t min) {
      const std::string v = next();
      try {
        size_t used = 0;
        const int64_t x = std::stoll(v, &used);
        if (used == v.size() && x >= min) return x;
      } catch (const std::exception&) {
      }
      usage(k + " must be an integer >= " + std::to_string(min) + ", got '" + v + "'");
    };
    if (k == "--job") a.job = next();
    else if (k == "--set") a.sets.push_back(next());
    else if (k == "--batch") a.batch = integer(1);
    else if (k == "--threads") a.threads = integer(1);
    else if (k == "--warmup") a.warmup = integer(0);
    else if (k == "--steps") a.steps = integer(1);
    else if (k == "--inputs") a.inputs = next();
    else if (k == "--json") a.json = next();
    else if (k == "--dump") a.dump = next();
    else if (k == "--profile") a.profile = next();
    else usage("unknown argument '" + k + "'");
  }
  if (a.job.empty()) usage("--job is required");
  return a;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  MGCA_CHECK(in.good(), "bench_step: cannot read job file {}", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double peak_rss_mb() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // KiB on Linux
}

int run(int argc, char** argv) {
  comm::init(&argc, &argv);
  const Args args = parse_args(argc, argv);

  // The job as `mgca train` reads it, plus what a benchmark run needs: a
  // fixed number of steps, no intermediate checkpoints, a scratch output.
  std::vector<std::string> overrides = args.sets;
  overrides.push_back("data.train=synthetic-inputs");
  if (args.batch > 0) overrides.push_back("data.batch_size=" + std::to_string(args.batch));
  if (args.threads > 0) overrides.push_back("runtime.threads=" + std::to_string(args.threads));
  overrides.push_back("schedule.max_steps=" + std::to_string(args.warmup + args.steps + 1));
  overrides.push_back("checkpoint.every_steps=0");
  overrides.push_back("checkpoint.resume=\"none\"");
  overrides.push_back("logging.every_steps=1");
  overrides.push_back("name=\"bench-step\"");
  train::Config config = train::parse_config(read_text(args.job), args.job, overrides);

  auto world = comm::Communicator::world(bench::comm_options(config));
  // One scratch folder for all ranks (rank 0 names it): checkpoints are shared.
  const fs::path work = world->broadcast_string(
      (fs::temp_directory_path() / ("mgca-bench-step-" + std::to_string(::getpid()))).string(), 0);
  config.output_dir = (work / "runs").string();
  auto timed = std::make_shared<bench::TimedCommunicator>(world);
  const int threads = train::select_threads(config, *world);
  mgca::compat::set_cpu_threads(threads);
  const torch::Device device = train::select_device(config, *world);
  train::set_deterministic(config, device);  // as `mgca train`: runtime.deterministic's cost is in the figure

  // As train::run_training: the same initial weights on every rank, then each
  // rank's own stream for dropout; the task is `mgca train`'s (make_task),
  // fed from the synthetic batches.
  torch::manual_seed(static_cast<uint64_t>(config.seed));
  auto source = std::make_unique<bench::SyntheticSource>(config, *world, device, args.inputs);
  const auto inputs = source->tensors();
  auto task = std::make_unique<bench::RecordingTask>(train::make_task(config, timed, device, std::move(source)),
                                                     timed);
  torch::manual_seed(util::make_key({static_cast<uint64_t>(config.seed), 0x7261'6e6bULL,
                                     static_cast<uint64_t>(world->rank())}) >> 1);
  bench::RecordingTask* task_ptr = task.get();
  if (!args.profile.empty() && world->rank() == 0) task_ptr->profile_step(args.warmup, args.profile);
  if (!args.dump.empty()) {
    MGCA_CHECK(world->size() == 1, "bench_step --dump runs on one rank, not {}", world->size());
    fs::create_directories(args.dump);
    std::vector<std::pair<std::string, torch::Tensor>> state;
    for (const auto& p : task->module().named_parameters(true)) state.emplace_back(p.key(), p.value().detach());
    for (const auto& b : task->module().named_buffers(true)) state.emplace_back(b.key(), b.value());
    io::save_safetensors(fs::path(args.dump) / "initial.safetensors", state);
    io::save_safetensors(fs::path(args.dump) / "inputs.safetensors", inputs);
  }

  train::Trainer trainer(config, timed, std::move(task), device);
  trainer.run();
  const auto records = task_ptr->step_records();  // one per completed step boundary

  const fs::path metrics_path = config.run_dir() / "metrics.jsonl";
  if (world->rank() == 0) {
    std::vector<nlohmann::json> metrics;
    std::ifstream in(metrics_path);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) metrics.push_back(nlohmann::json::parse(line));
    }
    MGCA_CHECK(static_cast<int64_t>(metrics.size()) == args.warmup + args.steps + 1,
               "bench_step: {} has {} lines, expected {}", metrics_path.string(), metrics.size(),
               args.warmup + args.steps + 1);
    if (!args.dump.empty()) {
      std::ofstream out(fs::path(args.dump) / "metrics.jsonl");
      for (int64_t i = 0; i < args.warmup + args.steps; ++i) out << metrics[i].dump() << "\n";
    }
    nlohmann::ordered_json result;
    result["side"] = "ours";
    result["implementation"] = "mgca-hpc (C++ libtorch " + std::to_string(TORCH_VERSION_MAJOR) + "." +
                               std::to_string(TORCH_VERSION_MINOR) + ")";
    result["device"] = device.str();
    result["threads"] = threads;
    result["world_size"] = world->size();
    result["job"] = args.job;
    result["overrides"] = args.sets;
    result["batch"] = config.data.batch_size;
    result["warmup"] = args.warmup;
    result["communicator"] = world->describe();
    std::vector<nlohmann::ordered_json> steps;
    std::map<std::string, std::vector<double>> series;
    for (int64_t i = 0; i < args.warmup + args.steps; ++i) {
      const auto& m = metrics[i];
      nlohmann::ordered_json s;
      s["data"] = m.at("time_data_s");
      s["forward"] = m.at("time_forward_s");
      s["backward"] = m.at("time_backward_s");
      s["comm"] = m.at("time_comm_s");
      s["optimizer"] = m.at("time_optimizer_s");
      s["total"] = m.at("time_step_s");
      s["comm_calls"] = records.at(i).comm_seconds;
      s["cpu"] = records.at(i).cpu_seconds;
      s["page_faults"] = records.at(i).page_faults;
      for (const auto& [k, v] : m.items()) {
        if (k.rfind("loss", 0) == 0 || k.rfind("acc", 0) == 0 || k == "grad_norm") s[k] = v;
      }
      if (i >= args.warmup) {
        for (const auto& [k, v] : s.items()) {
          if (v.is_number()) series[k].push_back(v.get<double>());
        }
      }
      steps.push_back(s);
    }
    result["steps"] = steps;
    nlohmann::ordered_json med;
    for (const char* k : {"data", "forward", "backward", "comm", "optimizer", "total", "comm_calls", "cpu",
                          "page_faults"}) {
      med[k] = median(series[k]);
    }
    result["median_s"] = med;
    result["samples_per_s"] = static_cast<double>(config.data.batch_size) / med["total"].get<double>();
    result["peak_rss_mb"] = peak_rss_mb();
    const std::string text = result.dump(1);
    if (!args.json.empty()) {
      std::ofstream out(args.json);
      MGCA_CHECK(out.good(), "bench_step: cannot write {}", args.json);
      out << text << "\n";
    }
    std::cout << text << "\n";
  }
  world->barrier();
  if (world->rank() == 0) {
    std::error_code ec;
    fs::remove_all(work, ec);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mgca::util::retain_freed_host_memory();  // as mgca itself does (src/cli/main.cpp)
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
