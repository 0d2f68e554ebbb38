// Collective bandwidth of our Communicator beside the raw MPI call, with
// nccl-tests' definitions (docs/contract.md §9):
//   algbw = size / time, where size is the all-reduce buffer, the all-gather
//           output or the reduce-scatter input (bytes);
//   busbw = algbw × 2(n−1)/n (all-reduce), × (n−1)/n (all-gather, reduce-scatter).
// Variants, interleaved in every iteration so that they see the same load:
//   raw        MPI_Allreduce / MPI_Allgather / MPI_Reduce_scatter_block on a dup of MPI_COMM_WORLD
//   ours       Communicator::all_reduce / all_gather_into / reduce_scatter_into (cross-rank check on)
//   nocheck    the same with CommOptions::validate = false
//   alloc      all_gather / reduce_scatter returning a new tensor (check on)
//   async      all_reduce_async(...)->wait() without the check (the GradSync path)
// Each timed call is preceded by a barrier; a call's time is the maximum over
// ranks; the figure is the median over iterations. Prints a table and writes
// JSON (--json). Run under mpirun:
//   mpirun -np 2 build/release/bench/comm/bench_comm --json comm-np2.json
//
//   bench_comm [--min-bytes 4096] [--max-bytes 268435456] [--factor 4]
//              [--warmup 3] [--iters N (default: by size)] [--dtype float32|float64|bfloat16]
//              [--collectives all_reduce,all_gather,reduce_scatter] [--json PATH]
#include <mpi.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mgca/comm/communicator.h"
#include "mgca/util/error.h"
#include "mgca/util/torch_compat.h"

namespace {

using mgca::comm::Communicator;
using mgca::comm::ReduceOp;

struct Args {
  int64_t min_bytes = 4096;
  int64_t max_bytes = int64_t{256} << 20;
  int64_t factor = 4;
  int warmup = 3;
  int iters = 0;  // 0: by size
  std::string dtype = "float32";
  std::vector<std::string> collectives = {"all_reduce", "all_gather", "reduce_scatter"};
  std::string json;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    auto next = [&]() -> std::string {
      MGCA_CHECK(i + 1 < argc, "bench_comm: {} needs a value", key);
      return argv[++i];
    };
    if (key == "--min-bytes") {
      a.min_bytes = std::stoll(next());
    } else if (key == "--max-bytes") {
      a.max_bytes = std::stoll(next());
    } else if (key == "--factor") {
      a.factor = std::stoll(next());
    } else if (key == "--warmup") {
      a.warmup = std::stoi(next());
    } else if (key == "--iters") {
      a.iters = std::stoi(next());
    } else if (key == "--dtype") {
      a.dtype = next();
    } else if (key == "--json") {
      a.json = next();
    } else if (key == "--collectives") {
      a.collectives.clear();
      std::stringstream ss(next());
      for (std::string s; std::getline(ss, s, ',');) a.collectives.push_back(s);
    } else {
      MGCA_FAIL("bench_comm: unknown argument '{}' (valid: --min-bytes --max-bytes --factor --warmup --iters "
                "--dtype --collectives --json)",
                key);
    }
  }
  MGCA_CHECK(a.factor >= 2 && a.min_bytes > 0 && a.max_bytes >= a.min_bytes, "bench_comm: bad size range");
  for (const auto& c : a.collectives) {
    MGCA_CHECK(c == "all_reduce" || c == "all_gather" || c == "reduce_scatter",
               "bench_comm: unknown collective '{}' (valid: all_reduce, all_gather, reduce_scatter)", c);
  }
  return a;
}

torch::ScalarType scalar_type(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "float64") return torch::kFloat64;
  if (name == "bfloat16") return torch::kBFloat16;
  MGCA_FAIL("bench_comm: --dtype {} (valid: float32, float64, bfloat16)", name);
}

MPI_Datatype raw_type(torch::ScalarType t) {
  return t == torch::kFloat32 ? MPI_FLOAT : t == torch::kFloat64 ? MPI_DOUBLE : MPI_UINT16_T;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double bus_factor(const std::string& collective, int n) {
  if (n <= 1) return 0.0;
  return collective == "all_reduce" ? 2.0 * (n - 1) / n : static_cast<double>(n - 1) / n;
}

struct Variant {
  std::string name;
  std::function<void()> run;
};

// Times every variant `iters` times, interleaved; returns per variant the
// per-call times (max over ranks), seconds.
std::vector<std::vector<double>> time_variants(const std::vector<Variant>& variants, int warmup, int iters,
                                               MPI_Comm comm) {
  for (const auto& v : variants) {
    for (int i = 0; i < warmup; ++i) v.run();
  }
  std::vector<std::vector<double>> times(variants.size(), std::vector<double>(static_cast<size_t>(iters)));
  for (int i = 0; i < iters; ++i) {
    for (size_t k = 0; k < variants.size(); ++k) {
      const size_t j = (k + static_cast<size_t>(i)) % variants.size();  // rotate who goes first
      MPI_Barrier(comm);
      const double t0 = now();
      variants[j].run();
      times[j][static_cast<size_t>(i)] = now() - t0;
    }
  }
  for (auto& t : times) MPI_Allreduce(MPI_IN_PLACE, t.data(), iters, MPI_DOUBLE, MPI_MAX, comm);
  return times;
}

}  // namespace

int main(int argc, char** argv) {
  mgca::comm::init(&argc, &argv);
  try {
    const Args args = parse(argc, argv);
    const auto type = scalar_type(args.dtype);
    const int64_t esize = static_cast<int64_t>(c10::elementSize(type));
    mgca::compat::set_cpu_threads(1);

    mgca::comm::CommOptions checked_options;
    auto ours = Communicator::world(checked_options);
    mgca::comm::CommOptions nocheck_options;
    nocheck_options.validate = false;
    auto nocheck = Communicator::world(nocheck_options);
    MPI_Comm raw = MPI_COMM_NULL;
    MPI_Comm_dup(MPI_COMM_WORLD, &raw);
    const int n = ours->size();
    const int rank = ours->rank();
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const bool oversubscribed = ours->local_size() > static_cast<int>(cores);

    nlohmann::json out;
    out["benchmark"] = "bench_comm";
    out["world_size"] = n;
    out["local_size"] = ours->local_size();
    out["host"] = ours->host();
    out["cores"] = cores;
    out["oversubscribed"] = oversubscribed;
    out["dtype"] = args.dtype;
    out["timing"] = "median over iterations of the per-call maximum over ranks, barrier before each call";
    out["definitions"] = "algbw = bytes / time; busbw = algbw * 2(n-1)/n (all_reduce), (n-1)/n (all_gather, reduce_scatter)";
    out["results"] = nlohmann::json::array();

    // ---- fixed per-call costs (no payload) ---------------------------------
    {
      auto empty = torch::empty({0}, type);
      std::array<int64_t, 26> meta{};
      std::vector<Variant> calls = {
          {"raw MPI_Allreduce of 26 int64 (= the cross-rank check)",
           [&] { MPI_Allreduce(MPI_IN_PLACE, meta.data(), 26, MPI_INT64_T, MPI_MIN, raw); }},
          {"ours all_reduce of an empty tensor, check on", [&] { ours->all_reduce(empty); }},
          {"ours all_reduce of an empty tensor, check off", [&] { nocheck->all_reduce(empty); }},
      };
      auto times = time_variants(calls, 20, 400, raw);
      nlohmann::json overhead = nlohmann::json::object();
      if (rank == 0) std::printf("\nper-call fixed costs (median, µs)%s\n", oversubscribed ? " [oversubscribed]" : "");
      for (size_t k = 0; k < calls.size(); ++k) {
        const double us = median(times[k]) * 1e6;
        overhead[calls[k].name] = us;
        if (rank == 0) std::printf("  %8.2f  %s\n", us, calls[k].name.c_str());
      }
      out["per_call_us"] = overhead;
    }

    for (const auto& collective : args.collectives) {
      if (rank == 0) {
        std::printf("\n%s, %s, %d ranks%s — busbw in GB/s (ratio to raw)\n", collective.c_str(), args.dtype.c_str(), n,
                    oversubscribed ? " [oversubscribed]" : "");
        std::printf("%12s %10s %9s %9s | %17s %17s %17s\n", "bytes", "raw us", "raw algbw", "raw busbw", "ours",
                    "ours no-check", collective == "all_reduce" ? "ours async" : "ours allocating");
      }
      for (int64_t size = args.min_bytes; size <= args.max_bytes; size *= args.factor) {
        // size: the all-reduce buffer, the all-gather output, the reduce-scatter input.
        const int64_t count = collective == "all_reduce" ? size / esize : size / esize / n;
        if (count <= 0) continue;
        const int64_t bytes = collective == "all_reduce" ? count * esize : count * esize * n;
        const int iters = args.iters > 0 ? args.iters : static_cast<int>(std::clamp<int64_t>((int64_t{256} << 20) / bytes, 5, 200));

        std::vector<Variant> variants;
        torch::Tensor buffer, input, output;
        if (collective == "all_reduce") {
          buffer = torch::zeros({count}, type);
          if (type != torch::kBFloat16) {  // raw MPI has no bfloat16 sum
            variants.push_back({"raw", [&] {
                                  MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr(), static_cast<int>(count),
                                                raw_type(type), MPI_SUM, raw);
                                }});
          }
          variants.push_back({"ours", [&] { ours->all_reduce(buffer, ReduceOp::Sum); }});
          variants.push_back({"nocheck", [&] { nocheck->all_reduce(buffer, ReduceOp::Sum); }});
          // The asynchronous path GradSync uses: worker-thread hand-off, no check.
          variants.push_back({"async", [&] { nocheck->all_reduce_async(buffer, ReduceOp::Sum, false)->wait(); }});
        } else if (collective == "all_gather") {
          input = torch::zeros({count}, type);
          output = torch::zeros({count * n}, type);
          variants.push_back({"raw", [&] {
                                MPI_Allgather(input.data_ptr(), static_cast<int>(count), raw_type(type),
                                              output.data_ptr(), static_cast<int>(count), raw_type(type), raw);
                              }});
          variants.push_back({"ours", [&] { ours->all_gather_into(output, input); }});
          variants.push_back({"nocheck", [&] { nocheck->all_gather_into(output, input); }});
          variants.push_back({"alloc", [&] { (void)ours->all_gather(input); }});
        } else {
          input = torch::zeros({count * n}, type);
          output = torch::zeros({count}, type);
          if (type != torch::kBFloat16) {
            variants.push_back({"raw", [&] {
                                  MPI_Reduce_scatter_block(input.data_ptr(), output.data_ptr(),
                                                           static_cast<int>(count), raw_type(type), MPI_SUM, raw);
                                }});
          }
          variants.push_back({"ours", [&] { ours->reduce_scatter_into(output, input, ReduceOp::Sum); }});
          variants.push_back({"nocheck", [&] { nocheck->reduce_scatter_into(output, input, ReduceOp::Sum); }});
          variants.push_back({"alloc", [&] { (void)ours->reduce_scatter(input, ReduceOp::Sum); }});
        }
        const auto times = time_variants(variants, args.warmup, iters, raw);
        std::map<std::string, double> busbw, seconds;
        for (size_t k = 0; k < variants.size(); ++k) {
          const double t = median(times[k]);
          const double algbw = static_cast<double>(bytes) / t / 1e9;
          seconds[variants[k].name] = t;
          busbw[variants[k].name] = algbw * bus_factor(collective, n);
          out["results"].push_back({{"collective", collective},
                                    {"bytes", bytes},
                                    {"count", count},
                                    {"variant", variants[k].name},
                                    {"iterations", iters},
                                    {"time_us", t * 1e6},
                                    {"time_us_min", *std::min_element(times[k].begin(), times[k].end()) * 1e6},
                                    {"algbw_GBps", algbw},
                                    {"busbw_GBps", algbw * bus_factor(collective, n)}});
        }
        if (rank == 0) {
          auto cell = [&](const std::string& v) -> std::string {
            if (!busbw.count(v)) return "-";
            const double ratio = busbw.count("raw") && busbw["raw"] > 0 ? busbw[v] / busbw["raw"] : 0.0;
            if (n == 1) return fmt::format("{:.1f} us", seconds[v] * 1e6);
            return busbw.count("raw") ? fmt::format("{:.3f} ({:.3f})", busbw[v], ratio) : fmt::format("{:.3f}", busbw[v]);
          };
          const bool has_raw = busbw.count("raw") > 0;
          std::printf("%12lld %10.1f %9.3f %9.3f | %17s %17s %17s\n", static_cast<long long>(bytes),
                      has_raw ? seconds["raw"] * 1e6 : 0.0,
                      has_raw ? static_cast<double>(bytes) / seconds["raw"] / 1e9 : 0.0, has_raw ? busbw["raw"] : 0.0,
                      cell("ours").c_str(), cell("nocheck").c_str(),
                      cell(collective == "all_reduce" ? "async" : "alloc").c_str());
          std::fflush(stdout);
        }
      }
    }
    if (rank == 0 && !args.json.empty()) {
      std::ofstream file(args.json);
      MGCA_CHECK(file.good(), "bench_comm: cannot write '{}'", args.json);
      file << out.dump(2) << "\n";
      std::printf("\nwrote %s\n", args.json.c_str());
    }
    MPI_Comm_free(&raw);
    ours.reset();
    nocheck.reset();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s\n", error.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  mgca::comm::finalize();
  return 0;
}
