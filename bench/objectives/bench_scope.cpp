// bench_scope: what objectives.negatives / objectives.sinkhorn = "local" (the
// official per-GPU losses) change against "global" at the first step of a job.
//
//   mpirun -np W --bind-to none bench_scope JOB.toml [key=value ...]
//
// The job as `mgca train` reads it (the key=value overrides as --set), its
// task built by train::make_task from config.seed (the same initial weights
// for every setting) with the job's loader, the prototypes normalized as
// before every step, and the first micro-batch's forward without gradient
// (no backward: the losses of step 1 are those of the initial weights).
// Once with both keys global, once with both local (negatives changes only
// ITA, sinkhorn only CPA, so the two give every mix); rank 0 prints one JSON line per setting with every loss part and the
// Sinkhorn codes' entropy (`codes_entropy`), each the mean over ranks, as
// metrics.jsonl reports them.
#include <torch/torch.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/comm/runtime.h"
#include "mgca/train/config.h"
#include "mgca/train/run.h"
#include "mgca/train/trainer.h"
#include "mgca/util/error.h"
#include "mgca/util/torch_compat.h"

using namespace mgca;

int main(int argc, char** argv) {
  comm::init(&argc, &argv);
  int status = 0;
  try {
    MGCA_CHECK(argc >= 2, "usage: bench_scope JOB.toml [key=value ...]");
    const std::vector<std::string> overrides(argv + 2, argv + argc);
    auto world = comm::Communicator::world();
    const train::Config base = train::load_config_collective(argv[1], overrides, *world);
    compat::set_cpu_threads(train::select_threads(base, *world));
    const torch::Device device = train::select_device(base, *world);
    using objectives::Scope;
    // negatives changes only ITA and sinkhorn only CPA: the two settings give every mix.
    for (const Scope scope : {Scope::Global, Scope::Local}) {
      train::Config config = base;
      config.objectives.negatives = scope;
      config.objectives.sinkhorn = scope;
      torch::manual_seed(static_cast<uint64_t>(config.seed));
      auto task = train::make_task(config, world, device);
      task->seek(0, 0);
      task->next_batch();
      task->before_step(0);
      train::LossParts parts;
      {
        torch::NoGradGuard no_grad;
        compat::AutocastGuard autocast(train::uses_autocast(config, device), device.type(), at::kBFloat16);
        parts = task->forward();
      }
      std::vector<double> values;
      for (const auto& part : parts.parts) values.push_back(part.second.item<double>());
      auto packed = torch::tensor(values, torch::kFloat64);
      world->all_reduce(packed, comm::ReduceOp::Avg);
      if (world->rank() == 0) {
        nlohmann::ordered_json line;
        line["negatives"] = util::enum_name(scope);
        line["sinkhorn"] = util::enum_name(scope);
        line["world"] = world->size();
        line["batch_per_rank"] = config.data.batch_size;
        for (size_t i = 0; i < values.size(); ++i) line[parts.parts[i].first] = packed[i].item<double>();
        std::cout << line.dump() << std::endl;
      }
    }
  } catch (const mgca::Error& error) {
    std::cerr << error.what() << "\n";
    status = 1;
  }
  comm::finalize();
  return status;
}
