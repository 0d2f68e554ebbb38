// bench_objectives: forward+backward time and peak memory of the objectives
// (ITA, CTA, CPA, the whole MGCA objective, ConVIRT) against the global batch
// N and the local batch b.
//
// Each point runs in a fresh process (this program re-executed with
// --point), so ru_maxrss is that point's own peak. Tensor memory is counted
// exactly by a counting CPU allocator installed before the first tensor:
// `peak_step` is the most bytes alive during one forward+backward above what
// was alive before it (inputs, the emulated world's columns); also reported:
// the peak during the forward alone and what the forward leaves alive for
// the backward.
//
// EMULATION: one process stands for rank 0 of a world of W = N/b ranks. The
// benchmark-only EmulatedCommunicator reports size W; its all_gather returns
// [W·b, …] columns (this rank's rows at its place, the other ranks' rows from
// a fixed random buffer), its reduce_scatter returns this rank's block, and
// its all-reduce of a sum multiplies by W (as if every rank held the same
// values). Shapes, allocations and arithmetic per rank are those of a real
// W-rank run; communication time is not included (bench/comm measures it).
//
//   bench_objectives [--reps 5] [--threads 1] [--json FILE] [--quick] [--reference] [--ita-memory]
//   bench_objectives --point OBJECTIVE,b,N,d[,TILE] [--reps R] [--threads T] [--profile TRACE.json]
//       one point, one JSON line; --profile writes a chrome trace of one more step.
//       TILE sets objectives.ita_tile (default: ObjectiveOptions' value);
//       TILE >= N runs the one-matrix ITA/ConVIRT loss.
//
// --ita-memory replaces the sweep by ITA at b = 256, d = 128 and N = 65,536
// and 1,000,192 (≈ 10⁶, a multiple of b) global negatives, one-matrix
// against tiled: the peak memory per rank of the memory-flat loss.
//
// --reference also times the official MGCA loss code's structure in PyTorch
// (official_objective.py, the venv Python) at W = 1 for the "mgca" points.
#include <c10/core/CPUAllocator.h>
#include <sys/resource.h>
#include <time.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include <torch/csrc/autograd/profiler_legacy.h>

#include "mgca/build_config.h"
#include "mgca/comm/communicator.h"
#include "mgca/objectives/objectives.h"
#include "mgca/util/error.h"
#include "mgca/util/torch_compat.h"

namespace {

using mgca::comm::Communicator;
using mgca::comm::ReduceOp;
using json = nlohmann::json;
namespace obj = mgca::objectives;
namespace F = torch::nn::functional;

// ---------------------------------------------------------------- counting allocator

std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};

class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}
  c10::DataPtr allocate(size_t n) override {
    auto inner = base_->allocate(n);
    void* data = inner.get();
    auto* ctx = new Context{std::move(inner), static_cast<int64_t>(n)};
    const int64_t now = g_current.fetch_add(ctx->bytes) + ctx->bytes;
    int64_t peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
    return {data, ctx, &release, c10::Device(c10::DeviceType::CPU)};
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

 private:
  struct Context {
    c10::DataPtr inner;
    int64_t bytes;
  };
  static void release(void* p) {
    auto* ctx = static_cast<Context*>(p);
    g_current.fetch_sub(ctx->bytes);
    delete ctx;
  }
  c10::Allocator* base_;
};

void install_counting_allocator() {
  static CountingAllocator alloc(c10::GetDefaultCPUAllocator());
  c10::SetCPUAllocator(&alloc, /*priority=*/100);
}

// ---------------------------------------------------------------- emulated world

class CompletedWork final : public mgca::comm::Work {
 public:
  void wait() override {}
  bool test() override { return true; }
};

class EmulatedCommunicator final : public Communicator {
 public:
  explicit EmulatedCommunicator(int size) : size_(size) {}
  int rank() const override { return 0; }
  int size() const override { return size_; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  const std::string& host() const override { return host_; }
  const mgca::comm::CommOptions& options() const override { return options_; }
  int device_index() const override { return -1; }
  std::shared_ptr<Communicator> duplicate_for_host() override {
    return std::make_shared<EmulatedCommunicator>(size_);
  }
  std::string describe() const override { return "emulated world of " + std::to_string(size_) + " ranks (bench only)"; }

  void all_reduce(torch::Tensor& t, ReduceOp op) override {
    if (op == ReduceOp::Sum) t.mul_(size_);
  }
  std::shared_ptr<mgca::comm::Work> all_reduce_async(torch::Tensor t, ReduceOp op, bool) override {
    all_reduce(t, op);
    return std::make_shared<CompletedWork>();
  }
  torch::Tensor all_gather(const torch::Tensor& t) override {
    // The other ranks' rows: a fixed random buffer per shape and dtype.
    auto key = c10::str(t.sizes(), t.scalar_type());
    auto& rest = others_[key];
    if (!rest.defined()) {
      auto shape = t.sizes().vec();
      shape[0] *= (size_ - 1);
      rest = torch::randn(shape, torch::TensorOptions().dtype(torch::kFloat)).to(t.scalar_type());
    }
    return torch::cat({t, rest});  // rank 0's rows first
  }
  void all_gather_into(torch::Tensor& output, const torch::Tensor& input) override {
    output.copy_(all_gather(input));
  }
  torch::Tensor reduce_scatter(const torch::Tensor& t, ReduceOp) override {
    return t.narrow(0, 0, t.size(0) / size_).clone();
  }
  void reduce_scatter_into(torch::Tensor& output, const torch::Tensor& input, ReduceOp) override {
    output.copy_(input.narrow(0, 0, input.size(0) / size_));
  }
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
  double all_reduce_scalar(double v, ReduceOp op) override { return op == ReduceOp::Sum ? v * size_ : v; }
  bool any(bool flag) override { return flag; }
  std::string broadcast_string(const std::string& v, int) override { return v; }

 private:
  int size_;
  std::string host_ = "emulated";
  mgca::comm::CommOptions options_;
  std::map<std::string, torch::Tensor> others_;
};

// ---------------------------------------------------------------- one point

struct Point {
  std::string objective;  // ita | cta | cpa | mgca | convirt
  int64_t b = 256, N = 256, d = 128;
  int64_t tile = 0;  // objectives.ita_tile; 0 = ObjectiveOptions' default
  std::string spec() const {
    return objective + "," + std::to_string(b) + "," + std::to_string(N) + "," + std::to_string(d) +
           (tile > 0 ? "," + std::to_string(tile) : "");
  }
};

constexpr int64_t kWords = 111, kPatches = 196, kPrototypes = 500;

// CPU time of this process (all threads): steadier than wall time on a
// shared machine, equal to it × threads on an idle one.
double cpu_now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

json run_point(const Point& p, int reps, const std::string& profile) {
  MGCA_CHECK(p.b > 0 && p.N % p.b == 0, "point {}: N must be a multiple of b", p.spec());
  const int W = static_cast<int>(p.N / p.b);
  std::shared_ptr<Communicator> comm =
      W == 1 ? Communicator::single() : std::make_shared<EmulatedCommunicator>(W);
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(7);
  const auto norm = F::NormalizeFuncOptions().dim(-1);
  auto leaf = [&](std::vector<int64_t> shape) { return torch::randn(shape, gen).requires_grad_(true); };
  auto img = leaf({p.b, p.d}), txt = leaf({p.b, p.d});
  auto word = leaf({p.b, kWords, p.d}), patch = leaf({p.b, kPatches, p.d});
  auto proto = torch::randn({kPrototypes, p.d}, gen);
  obj::normalize_prototypes_(proto);
  proto.requires_grad_(true);
  auto word_weight = torch::rand({p.b, kWords}, gen);
  auto word_mask = torch::zeros({p.b, kWords}, torch::kBool);
  for (int64_t i = 0; i < p.b; ++i) {
    const int64_t len = 20 + (i * 37) % (kWords - 20);  // reports of 20..110 words
    word_mask[i].slice(0, len).fill_(true);
    word_weight[i].slice(0, len).zero_();
  }
  auto patch_weight = torch::rand({p.b, kPatches}, gen);
  obj::ObjectiveOptions opts;
  if (p.tile > 0) opts.ita_tile = p.tile;

  // Normalization is the heads' job; it is part of the timed graph here as
  // in a train step (cheap next to the objectives).
  int64_t peak_fwd = 0, alive_after_fwd = 0;
  auto step = [&](double* fwd_ms, double* cpu_ms) {
    const double c0 = cpu_now_ms();
    const auto t0 = std::chrono::steady_clock::now();
    torch::Tensor loss;
    if (p.objective == "ita") {
      loss = obj::instance_alignment(F::normalize(img, norm), F::normalize(txt, norm), opts, comm).loss;
    } else if (p.objective == "convirt") {
      loss = obj::convirt_loss(F::normalize(img, norm), F::normalize(txt, norm), opts, comm).loss;
    } else if (p.objective == "cpa") {
      loss = obj::prototype_alignment(F::normalize(img, norm), F::normalize(txt, norm), proto, opts, comm).loss;
    } else if (p.objective == "cta") {
      loss = obj::token_alignment(F::normalize(word, norm), word_weight, word_mask, F::normalize(patch, norm),
                                  patch_weight, opts)
                 .loss;
    } else if (p.objective == "mgca") {
      obj::MgcaObjectiveInputs in;
      in.img_emb = F::normalize(img, norm);
      in.report_emb = F::normalize(txt, norm);
      in.patch_emb = F::normalize(patch, norm);
      in.word_emb = F::normalize(word, norm);
      in.word_weight = word_weight;
      in.word_mask = word_mask;
      in.patch_weight = patch_weight;
      in.prototypes = proto;
      loss = obj::mgca_objective(in, opts, comm).loss;
    } else {
      MGCA_FAIL("unknown objective '{}' (ita, cta, cpa, mgca, convirt)", p.objective);
    }
    const auto t1 = std::chrono::steady_clock::now();
    peak_fwd = std::max(peak_fwd, g_peak.load());
    alive_after_fwd = g_current.load();
    loss.backward();
    const auto t2 = std::chrono::steady_clock::now();
    *cpu_ms = cpu_now_ms() - c0;
    for (auto* t : {&img, &txt, &word, &patch, &proto}) t->mutable_grad() = torch::Tensor();
    *fwd_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    return std::chrono::duration<double, std::milli>(t2 - t0).count();
  };

  double fwd = 0, cpu = 0;
  step(&fwd, &cpu);  // warm-up: first touch, the emulated world's buffers
  const int64_t baseline = g_current.load();
  g_peak.store(baseline);
  peak_fwd = baseline;
  std::vector<double> fwd_ms, total_ms, cpu_ms;
  for (int r = 0; r < reps; ++r) {
    total_ms.push_back(step(&fwd, &cpu));
    fwd_ms.push_back(fwd);
    cpu_ms.push_back(cpu);
  }
  const int64_t peak_step = g_peak.load() - baseline;
  if (!profile.empty()) {  // one more step under the autograd profiler (chrome trace)
    torch::autograd::profiler::RecordProfile guard(profile);
    step(&fwd, &cpu);
  }
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  const int64_t logits = p.b * p.N * 4;
  return json{{"objective", p.objective},
              {"W", W},
              {"b", p.b},
              {"N", p.N},
              {"d", p.d},
              {"ita_tile", opts.ita_tile},
              {"tiled", (p.objective == "ita" || p.objective == "convirt" || p.objective == "mgca") && p.N > opts.ita_tile},
              {"emulated", W > 1},
              {"threads", at::get_num_threads()},
              {"reps", reps},
              {"fwd_ms", median(fwd_ms)},
              {"fwd_bwd_ms", median(total_ms)},
              {"fwd_bwd_cpu_ms", median(cpu_ms)},
              {"fwd_bwd_min_ms", *std::min_element(total_ms.begin(), total_ms.end())},
              {"peak_step_bytes", peak_step},
              {"peak_forward_bytes", peak_fwd - baseline},
              {"saved_for_backward_bytes", alive_after_fwd - baseline},
              {"baseline_bytes", baseline},
              {"logits_bytes", logits},
              {"peak_over_logits", static_cast<double>(peak_step) / static_cast<double>(logits)},
              {"maxrss_kib", static_cast<int64_t>(usage.ru_maxrss)}};
}

// ---------------------------------------------------------------- driver

std::vector<Point> sweep(bool quick, bool ita_memory) {
  std::vector<Point> pts;
  if (ita_memory) {
    for (int64_t n : {int64_t{65536}, int64_t{1000192}}) {
      pts.push_back({"ita", 256, n, 128, n});  // one matrix: b × N logits per direction
      pts.push_back({"ita", 256, n, 128, 0});  // tiled (the default tile)
    }
    return pts;
  }
  const std::vector<int64_t> worlds = quick ? std::vector<int64_t>{1, 4, 16} : std::vector<int64_t>{1, 4, 16, 64, 256};
  for (int64_t w : worlds) pts.push_back({"ita", 256, 256 * w, 128});           // ITA vs N, b = 256
  for (int64_t b : {32, 64, 128}) pts.push_back({"ita", b, 4096, 128});          // ITA vs b, N = 4096
  for (int64_t w : worlds) pts.push_back({"cpa", 256, 256 * w, 128});           // CPA vs N
  for (int64_t b : quick ? std::vector<int64_t>{16, 32} : std::vector<int64_t>{16, 32, 64, 128}) {
    pts.push_back({"cta", b, b, 128});                                           // CTA vs b (local)
  }
  for (int64_t w : quick ? std::vector<int64_t>{1, 4} : std::vector<int64_t>{1, 4, 16, 64}) {
    pts.push_back({"mgca", 64, 64 * w, 128});                                    // whole objective vs N, b = 64
  }
  for (int64_t b : {16, 32}) pts.push_back({"mgca", b, b, 128});                // whole objective vs b, W = 1
  for (int64_t w : quick ? std::vector<int64_t>{1, 16} : std::vector<int64_t>{1, 16, 64}) {
    pts.push_back({"convirt", 256, 256 * w, 512});                              // ConVIRT vs N
  }
  return pts;
}

Point parse_point(const std::string& s) {
  std::stringstream ss(s);
  std::vector<std::string> f;
  for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
  MGCA_CHECK(f.size() == 4 || f.size() == 5, "--point '{}': expected OBJECTIVE,b,N,d[,TILE]", s);
  return {f[0], std::stoll(f[1]), std::stoll(f[2]), std::stoll(f[3]), f.size() == 5 ? std::stoll(f[4]) : 0};
}

std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  MGCA_CHECK(pipe != nullptr, "cannot run '{}'", cmd);
  char buf[4096];
  while (fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
  const int status = pclose(pipe);
  MGCA_CHECK(status == 0, "'{}' failed (status {}): {}", cmd, status, out);
  return out;
}

std::string self_path() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  MGCA_CHECK(n > 0, "cannot read /proc/self/exe");
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    int reps = 5, threads = 1;
    bool quick = false, reference = false, ita_memory = false;
    std::string point, json_path, profile;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        MGCA_CHECK(i + 1 < argc, "bench_objectives: {} needs a value", a);
        return argv[++i];
      };
      if (a == "--reps") {
        reps = std::stoi(next());
      } else if (a == "--threads") {
        threads = std::stoi(next());
      } else if (a == "--point") {
        point = next();
      } else if (a == "--profile") {
        profile = next();
      } else if (a == "--json") {
        json_path = next();
      } else if (a == "--quick") {
        quick = true;
      } else if (a == "--reference") {
        reference = true;
      } else if (a == "--ita-memory") {
        ita_memory = true;
      } else {
        std::cerr << "usage: bench_objectives [--reps 5] [--threads 1] [--json FILE] [--quick] [--reference] "
                     "[--ita-memory]\n"
                     "       bench_objectives --point OBJECTIVE,b,N,d[,TILE] [--reps R] [--threads T] "
                     "[--profile TRACE.json]\n";
        return 2;
      }
    }
    MGCA_CHECK(reps >= 1 && threads >= 1, "bench_objectives: --reps and --threads must be >= 1");
    mgca::compat::set_cpu_threads(threads);

    if (!point.empty()) {
      install_counting_allocator();
      std::cout << run_point(parse_point(point), reps, profile).dump() << std::endl;
      return 0;
    }

    const std::string self = self_path();
    json results = json::array();
    std::printf("%-8s %5s %5s %7s %4s %7s %9s %11s %9s %14s %10s %11s\n", "obj", "W", "b", "N", "d", "tile",
                "fwd ms", "fwd+bwd ms", "cpu ms", "peak step MiB", "peak/b·N·4", "maxrss MiB");
    for (const auto& p : sweep(quick, ita_memory)) {
      auto out = run_capture(self + " --point " + p.spec() + " --reps " + std::to_string(reps) + " --threads " +
                             std::to_string(threads));
      auto r = json::parse(out.substr(out.rfind('{')));
      if (reference && p.objective == "mgca" && p.N == p.b) {
        const auto script = std::filesystem::path(MGCA_SOURCE_DIR) / "bench" / "objectives" / "official_objective.py";
        auto ref = run_capture("OMP_NUM_THREADS=" + std::to_string(threads) + " " MGCA_PYTHON " " + script.string() +
                               " --b " + std::to_string(p.b) + " --d " + std::to_string(p.d) + " --reps " +
                               std::to_string(reps) + " --threads " + std::to_string(threads));
        auto rj = json::parse(ref.substr(ref.rfind('{')));
        r["reference_fwd_bwd_ms"] = rj["fwd_bwd_ms"];
        r["reference_fwd_bwd_cpu_ms"] = rj["fwd_bwd_cpu_ms"];
        r["speedup_vs_reference"] = rj["fwd_bwd_ms"].get<double>() / r["fwd_bwd_ms"].get<double>();
        r["cpu_speedup_vs_reference"] = rj["fwd_bwd_cpu_ms"].get<double>() / r["fwd_bwd_cpu_ms"].get<double>();
      }
      std::printf("%-8s %5lld %5lld %7lld %4lld %7s %9.2f %11.2f %9.2f %14.2f %10.2f %11.1f%s\n",
                  r["objective"].get<std::string>().c_str(), (long long)r["W"].get<int64_t>(),
                  (long long)p.b, (long long)p.N, (long long)p.d,
                  r["tiled"].get<bool>() ? std::to_string(r["ita_tile"].get<int64_t>()).c_str() : "-",
                  r["fwd_ms"].get<double>(),
                  r["fwd_bwd_ms"].get<double>(), r["fwd_bwd_cpu_ms"].get<double>(),
                  r["peak_step_bytes"].get<double>() / (1 << 20),
                  r["peak_over_logits"].get<double>(), r["maxrss_kib"].get<double>() / 1024.0,
                  r.contains("speedup_vs_reference")
                      ? fmt::format("  PyTorch reference {:.2f} ms, cpu {:.2f} ms: ×{:.2f} (cpu ×{:.2f})",
                                    r["reference_fwd_bwd_ms"].get<double>(),
                                    r["reference_fwd_bwd_cpu_ms"].get<double>(),
                                    r["speedup_vs_reference"].get<double>(),
                                    r["cpu_speedup_vs_reference"].get<double>())
                            .c_str()
                      : "");
      std::fflush(stdout);
      results.push_back(r);
    }
    json doc{{"benchmark", "objectives"},
             {"note", "W > 1 is emulated in one process (EmulatedCommunicator): per-rank shapes, allocations and "
                      "arithmetic of a W-rank run, no communication time"},
             {"threads", threads},
             {"reps", reps},
             {"points", results}};
    if (!json_path.empty()) {
      std::ofstream(json_path) << doc.dump(2) << "\n";
      std::printf("wrote %s\n", json_path.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
