#include "mgca/model/dropout.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define MGCA_DROPOUT_AVX2 1
#else
#define MGCA_DROPOUT_AVX2 0
#endif
#include <torch/torch.h>

#include <cstdint>
#include <mutex>
#include <type_traits>
#include <vector>

#include "mgca/util/error.h"
#include "mgca/util/rng.h"

namespace mgca::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Elements are processed in blocks of 8: one mask byte (1 bit per element)
// per block, so each byte is written by one thread.
constexpr int64_t kGrainBlocks = 2048;

// Stream tag of the dropout keys (apart from the loader's augmentation streams).
constexpr uint64_t kDropoutStream = 0x64726f70ULL;  // "drop"

// Chris Wellons' lowbias32: a 32-bit integer hash with low bias (good avalanche).
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// The random number of element i for a call keyed (k0, k1).
inline uint32_t element_random(uint32_t i, uint32_t k0, uint32_t k1) { return mix32(mix32(i ^ k0) + k1); }

// One call: rows of row_len contiguous elements, each with its own 64-bit key
// (k0 = low half, k1 = high half); keep element j of row r when
// element_random(j, k0_r, k1_r) >= threshold.
struct Call {
  const uint64_t* row_keys;
  int64_t row_len;
  uint32_t threshold;
  float scale;
};

inline bool keep_element(int64_t row, int64_t j, const Call& c) {
  const uint64_t k = c.row_keys[row];
  return element_random(static_cast<uint32_t>(j), static_cast<uint32_t>(k), static_cast<uint32_t>(k >> 32)) >=
         c.threshold;
}

template <typename T>
inline T scaled(T x, float scale) {
  if constexpr (std::is_same_v<T, double>) {
    return x * static_cast<double>(scale);
  } else {
    return static_cast<T>(static_cast<float>(x) * scale);
  }
}

uint64_t next_seed() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get<at::CPUGeneratorImpl>()->random64();
}

// Scalar kernels for elements [begin, end) (begin a multiple of 8).
template <typename T>
void forward_scalar(const T* x, T* out, uint8_t* bits, int64_t begin, int64_t end, const Call& c) {
  int64_t row = begin / c.row_len, j = begin - row * c.row_len;
  for (int64_t block = begin; block < end; block += 8) {
    uint8_t byte = 0;
    for (int64_t i = block; i < std::min(block + 8, end); ++i, ++j) {
      if (j == c.row_len) {
        ++row;
        j = 0;
      }
      const bool keep = keep_element(row, j, c);
      byte |= static_cast<uint8_t>(keep) << (i - block);
      out[i] = keep ? scaled(x[i], c.scale) : static_cast<T>(0);
    }
    bits[block >> 3] = byte;
  }
}

template <typename T>
void backward_scalar(const T* g, const uint8_t* bits, T* out, int64_t begin, int64_t end, float scale) {
  for (int64_t i = begin; i < end; ++i) {
    const bool keep = (bits[i >> 3] >> (i & 7)) & 1;
    out[i] = keep ? scaled(g[i], scale) : static_cast<T>(0);
  }
}

#if MGCA_DROPOUT_AVX2
// AVX2 float kernels (8 elements per step), selected at run time.
__attribute__((target("avx2"))) inline __m256i mix32_avx2(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x846ca68bU)));
  return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}

__attribute__((target("avx2"))) void forward_f32_avx2(const float* x, float* out, uint8_t* bits, int64_t begin,
                                                      int64_t end, const Call& c) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i threshold = _mm256_set1_epi32(static_cast<int>(c.threshold));
  const __m256 scale = _mm256_set1_ps(c.scale);
  int64_t row = begin / c.row_len, j = begin - row * c.row_len;
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    if (j + 8 > c.row_len) {  // the block crosses a row boundary
      forward_scalar<float>(x, out, bits, i, i + 8, c);
      row = (i + 8) / c.row_len;
      j = i + 8 - row * c.row_len;
      continue;
    }
    const uint64_t k = c.row_keys[row];
    const __m256i k0 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(k)));
    const __m256i k1 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(k >> 32)));
    const __m256i index = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(j))), lanes);
    const __m256i r = mix32_avx2(_mm256_add_epi32(mix32_avx2(_mm256_xor_si256(index, k0)), k1));
    const __m256i keep = _mm256_cmpeq_epi32(_mm256_max_epu32(r, threshold), r);  // r >= threshold (unsigned)
    const __m256 y = _mm256_and_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), scale), _mm256_castsi256_ps(keep));
    _mm256_storeu_ps(out + i, y);
    bits[i >> 3] = static_cast<uint8_t>(_mm256_movemask_ps(_mm256_castsi256_ps(keep)));
    j += 8;
    if (j == c.row_len) {
      ++row;
      j = 0;
    }
  }
  if (i < end) forward_scalar<float>(x, out, bits, i, end, c);
}

__attribute__((target("avx2"))) void backward_f32_avx2(const float* g, const uint8_t* bits, float* out,
                                                       int64_t begin, int64_t end, float scale_value) {
  const __m256i lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256 scale = _mm256_set1_ps(scale_value);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256i byte = _mm256_set1_epi32(bits[i >> 3]);
    const __m256i keep = _mm256_cmpeq_epi32(_mm256_and_si256(byte, lane_bits), lane_bits);
    _mm256_storeu_ps(out + i, _mm256_and_ps(_mm256_mul_ps(_mm256_loadu_ps(g + i), scale), _mm256_castsi256_ps(keep)));
  }
  if (i < end) backward_scalar<float>(g, bits, out, i, end, scale_value);
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#else
bool has_avx2() { return false; }
void forward_f32_avx2(const float*, float*, uint8_t*, int64_t, int64_t, const Call&) {}
void backward_f32_avx2(const float*, const uint8_t*, float*, int64_t, int64_t, float) {}
#endif

// Runs fn(begin, end) over element ranges that start at multiples of 8.
template <typename F>
void for_blocks(int64_t n, F fn) {
  const int64_t blocks = (n + 7) / 8;
  at::parallel_for(0, blocks, kGrainBlocks, [&](int64_t b0, int64_t b1) { fn(b0 * 8, std::min(b1 * 8, n)); });
}

class FastDropout : public torch::autograd::Function<FastDropout> {
 public:
  // `call` is used during forward only (its row keys live in the caller).
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input, const Call* call) {
    const Call& c = *call;
    const auto x = input.contiguous();
    const int64_t n = x.numel();
    auto out = at::empty_like(x, at::MemoryFormat::Contiguous);
    auto bits = at::empty({(n + 7) / 8}, x.options().dtype(torch::kByte));
    uint8_t* b = bits.data_ptr<uint8_t>();
    if (x.scalar_type() == at::kFloat && has_avx2()) {
      const float* xp = x.data_ptr<float>();
      float* op = out.data_ptr<float>();
      for_blocks(n, [&](int64_t begin, int64_t end) { forward_f32_avx2(xp, op, b, begin, end, c); });
    } else {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "mgca_dropout", [&] {
        const scalar_t* xp = x.data_ptr<scalar_t>();
        scalar_t* op = out.data_ptr<scalar_t>();
        for_blocks(n, [&](int64_t begin, int64_t end) { forward_scalar<scalar_t>(xp, op, b, begin, end, c); });
      });
    }
    ctx->save_for_backward({bits});
    ctx->saved_data["scale"] = static_cast<double>(c.scale);
    return out.view(input.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto bits = ctx->get_saved_variables()[0];
    const auto scale = static_cast<float>(ctx->saved_data["scale"].toDouble());
    const auto g = grad_outputs[0].contiguous();
    const int64_t n = g.numel();
    auto out = at::empty_like(g, at::MemoryFormat::Contiguous);
    const uint8_t* b = bits.data_ptr<uint8_t>();
    if (g.scalar_type() == at::kFloat && has_avx2()) {
      const float* gp = g.data_ptr<float>();
      float* op = out.data_ptr<float>();
      for_blocks(n, [&](int64_t begin, int64_t end) { backward_f32_avx2(gp, b, op, begin, end, scale); });
    } else {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "mgca_dropout_backward", [&] {
        const scalar_t* gp = g.data_ptr<scalar_t>();
        scalar_t* op = out.data_ptr<scalar_t>();
        for_blocks(n, [&](int64_t begin, int64_t end) { backward_scalar<scalar_t>(gp, b, op, begin, end, scale); });
      });
    }
    return {out, torch::Tensor()};
  }
};

// The same hash with torch integer ops on x's device: 32-bit words held in
// int64, products split so that none exceeds 2^49 (no signed overflow).
constexpr int64_t kLow32 = 0xffffffffLL;

torch::Tensor mul32(const torch::Tensor& x, uint32_t factor) {
  const int64_t lo = factor & 0xffffU, hi = factor >> 16;
  return (x * lo + torch::bitwise_left_shift(torch::bitwise_and(x * hi, 0xffff), 16)).bitwise_and_(kLow32);
}

torch::Tensor mix32_tensor(torch::Tensor x) {
  x = torch::bitwise_xor(x, torch::bitwise_right_shift(x, 16));
  x = mul32(x, 0x7feb352dU);
  x = torch::bitwise_xor(x, torch::bitwise_right_shift(x, 15));
  x = mul32(x, 0x846ca68bU);
  return torch::bitwise_xor(x, torch::bitwise_right_shift(x, 16));
}

torch::Tensor dropout_tensor_ops(const torch::Tensor& x, const Call& c, int64_t rows) {
  const auto longs = torch::TensorOptions().dtype(torch::kLong).device(x.device());
  std::vector<int64_t> k0(rows), k1(rows);
  for (int64_t r = 0; r < rows; ++r) {
    k0[r] = static_cast<int64_t>(static_cast<uint32_t>(c.row_keys[r]));
    k1[r] = static_cast<int64_t>(static_cast<uint32_t>(c.row_keys[r] >> 32));
  }
  const auto key0 = torch::tensor(k0, torch::kLong).to(x.device()).view({rows, 1});
  const auto key1 = torch::tensor(k1, torch::kLong).to(x.device()).view({rows, 1});
  const auto j = torch::arange(c.row_len, longs).view({1, c.row_len});
  const auto h = mix32_tensor((mix32_tensor(torch::bitwise_xor(j, key0)) + key1).bitwise_and_(kLow32));
  const auto keep = h.ge(static_cast<int64_t>(c.threshold)).view(x.sizes());
  // x · (keep · scale): one rounding, as the CPU kernels; the gradient is the same mask and scale.
  return x * (keep.to(x.scalar_type()) * static_cast<double>(c.scale));
}

// The active scope of this thread.
struct ScopeState {
  uint64_t base = 0;
  std::vector<int64_t> samples;
  uint64_t calls = 0;
};
thread_local ScopeState* active_scope = nullptr;

}  // namespace

DropoutKeyScope::DropoutKeyScope(uint64_t seed, int64_t epoch, int64_t micro_batch, std::vector<int64_t> samples) {
  MGCA_CHECK(active_scope == nullptr, "dropout key scopes do not nest");
  MGCA_CHECK(!samples.empty(), "a dropout key scope needs the batch's sample indices");
  active_scope = new ScopeState{
      util::make_key({seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(micro_batch), kDropoutStream}),
      std::move(samples), 0};
}

DropoutKeyScope::~DropoutKeyScope() {
  delete active_scope;
  active_scope = nullptr;
}

torch::Tensor fast_dropout(const torch::Tensor& x, double p, bool train, DropoutPath path) {
  if (!train || p == 0.0) return x;
  MGCA_CHECK(p > 0.0 && p < 1.0, "dropout probability must be in [0, 1), got {}", p);
  std::vector<uint64_t> row_keys;
  if (active_scope != nullptr) {
    const auto& samples = active_scope->samples;
    const auto rows = static_cast<int64_t>(samples.size());
    MGCA_CHECK(x.dim() >= 1 && x.size(0) % rows == 0,
               "dropout: the leading dimension of a {} input is not a multiple of the batch's {} samples",
               c10::str(x.sizes()), rows);
    const uint64_t call = active_scope->calls++;
    for (const int64_t sample : samples) {
      row_keys.push_back(util::make_key({active_scope->base, call, static_cast<uint64_t>(sample)}));
    }
  } else {
    row_keys.push_back(next_seed());
  }
  const auto rows = static_cast<int64_t>(row_keys.size());
  const Call call{row_keys.data(), x.numel() / rows, static_cast<uint32_t>(std::min(p * 4294967296.0, 4294967295.0)),
                  static_cast<float>(1.0 / (1.0 - p))};
  // The counter is the 32-bit element index within a sample.
  MGCA_CHECK(call.row_len < (int64_t{1} << 32), "dropout: {} elements per sample exceed the 2^32 counter",
             call.row_len);
  if (x.numel() == 0) return x;
  if (path == DropoutPath::TensorOps || !x.device().is_cpu()) return dropout_tensor_ops(x, call, rows);
  return FastDropout::apply(x, &call);
}

}  // namespace mgca::model
