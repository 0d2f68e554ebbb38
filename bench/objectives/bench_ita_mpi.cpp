// bench_ita_mpi: our ITA (objectives::instance_alignment) under mpirun, the
// side of run_openclip.py that openclip_ita.py faces. Every rank builds its
// embeddings as openclip_ita.py does (the same seeded torch.randn, then L2
// normalization), computes the loss over the real world (our MPI
// communicator, gather with graph) with the directions averaged as
// open_clip's ClipLoss does (ita_sum_directions = false), and times forward +
// backward.
//
//   mpirun -np 2 bench_ita_mpi --b 256 [--d 128] [--tile T] [--reps 3] [--threads 1]
//                              [--temperature 0.07] [--seed 1000] [--dump DIR]
//
// --tile sets objectives.ita_tile; without it the tile is N (one b × N matrix
// per direction). --dump DIR writes this rank's inputs, loss and gradients
// (raw float32, rank<r>-<name>.f32) for run_openclip.py --check.
//
// Rank 0 prints one JSON line: medians over the timed steps of wall and CPU
// time (the slowest rank's per step), and the peak memory of a step: VmHWM
// after the steps minus VmRSS before the first step (the inputs already
// allocated), the most over the ranks; openclip_ita.py measures the same.
#include <mpi.h>
#include <time.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/comm/runtime.h"
#include "mgca/objectives/objectives.h"
#include "mgca/util/error.h"
#include "mgca/util/torch_compat.h"

namespace {

namespace F = torch::nn::functional;

double cpu_now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// A field of /proc/self/status in KiB (VmRSS, VmHWM).
int64_t proc_status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  MGCA_FAIL("/proc/self/status has no {}", field);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void dump(const std::string& dir, int rank, const std::string& name, const torch::Tensor& t) {
  auto c = t.detach().to(torch::kFloat).contiguous();
  std::ofstream out(dir + "/rank" + std::to_string(rank) + "-" + name + ".f32", std::ios::binary);
  out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * sizeof(float)));
  MGCA_CHECK(out.good(), "cannot write {} to {}", name, dir);
}

}  // namespace

int main(int argc, char** argv) {
  mgca::comm::init(&argc, &argv);
  try {
    int64_t b = 256, d = 128, tile = 0, seed = 1000;
    int reps = 3, threads = 1;
    double temperature = 0.07;
    std::string dump_dir;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        MGCA_CHECK(i + 1 < argc, "bench_ita_mpi: {} needs a value", a);
        return argv[++i];
      };
      if (a == "--b") b = std::stoll(next());
      else if (a == "--d") d = std::stoll(next());
      else if (a == "--tile") tile = std::stoll(next());
      else if (a == "--seed") seed = std::stoll(next());
      else if (a == "--reps") reps = std::stoi(next());
      else if (a == "--threads") threads = std::stoi(next());
      else if (a == "--temperature") temperature = std::stod(next());
      else if (a == "--dump") dump_dir = next();
      else MGCA_FAIL("bench_ita_mpi: unknown argument '{}' (see the header of bench_ita_mpi.cpp)", a);
    }
    MGCA_CHECK(b >= 1 && d >= 1 && reps >= 1 && threads >= 1 && tile >= 0, "bench_ita_mpi: bad sizes");
    mgca::compat::set_cpu_threads(threads);
    auto comm = mgca::comm::Communicator::world();
    const int rank = comm->rank();
    const int64_t N = b * comm->size();

    auto gen = torch::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed + rank));
    const auto norm = F::NormalizeFuncOptions().dim(-1);
    auto img = F::normalize(torch::randn({b, d}, gen), norm).requires_grad_(true);
    auto txt = F::normalize(torch::randn({b, d}, gen), norm).requires_grad_(true);
    auto opts = mgca::objectives::ObjectiveOptions::official();
    opts.ita_sum_directions = false;  // (CE_i2t + CE_t2i) / 2, as ClipLoss
    opts.ita_temperature = temperature;
    opts.ita_tile = tile > 0 ? tile : N;

    const int64_t rss_before_kib = proc_status_kib("VmRSS");
    std::vector<double> wall_ms, cpu_ms;
    torch::Tensor loss;
    for (int step = 0; step <= reps; ++step) {  // step 0: warm-up
      img.mutable_grad() = torch::Tensor();
      txt.mutable_grad() = torch::Tensor();
      comm->barrier();
      const double c0 = cpu_now_ms();
      const auto t0 = std::chrono::steady_clock::now();
      loss = mgca::objectives::instance_alignment(img, txt, opts, comm).loss;
      loss.backward();
      const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      const double cpu = cpu_now_ms() - c0;
      if (step > 0) {
        wall_ms.push_back(comm->all_reduce_scalar(wall, mgca::comm::ReduceOp::Max));
        cpu_ms.push_back(comm->all_reduce_scalar(cpu, mgca::comm::ReduceOp::Max));
      }
    }
    const double step_peak_kib = comm->all_reduce_scalar(
        static_cast<double>(proc_status_kib("VmHWM") - rss_before_kib), mgca::comm::ReduceOp::Max);
    if (!dump_dir.empty()) {
      dump(dump_dir, rank, "img", img);
      dump(dump_dir, rank, "txt", txt);
      dump(dump_dir, rank, "loss", loss);
      dump(dump_dir, rank, "grad_img", img.grad());
      dump(dump_dir, rank, "grad_txt", txt.grad());
    }
    if (rank == 0) {
      std::cout << nlohmann::json{{"side", tile > 0 && tile < N ? "ours-tiled" : "ours"},
                                  {"world", comm->size()},
                                  {"b", b},
                                  {"N", N},
                                  {"d", d},
                                  {"ita_tile", opts.ita_tile},
                                  {"threads", threads},
                                  {"reps", reps},
                                  {"fwd_bwd_ms", median(wall_ms)},
                                  {"fwd_bwd_cpu_ms", median(cpu_ms)},
                                  {"step_peak_mib", step_peak_kib / 1024.0},
                                  {"loss", loss.item<double>()}}
                       .dump()
                << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_ita_mpi: " << e.what() << "\n";
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  mgca::comm::finalize();
  return 0;
}
