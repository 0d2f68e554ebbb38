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

#include "mgca/util/error.h"

namespace mgca::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Elements are processed in blocks of 8: one mask byte (1 bit per element)
// per block, so each byte is written by one thread.
constexpr int64_t kGrainBlocks = 2048;

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

struct Key {
  uint32_t k0, k1, threshold;  // keep element i when element_random(i) >= threshold
  float scale;
};

uint64_t next_seed() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get<at::CPUGeneratorImpl>()->random64();
}

// Scalar kernels for elements [begin, end) (begin a multiple of 8).
template <typename T>
void forward_scalar(const T* x, T* out, uint8_t* bits, int64_t begin, int64_t end, const Key& k) {
  for (int64_t block = begin; block < end; block += 8) {
    uint8_t byte = 0;
    for (int64_t i = block; i < std::min(block + 8, end); ++i) {
      const bool keep = element_random(static_cast<uint32_t>(i), k.k0, k.k1) >= k.threshold;
      byte |= static_cast<uint8_t>(keep) << (i - block);
      out[i] = keep ? static_cast<T>(static_cast<float>(x[i]) * k.scale) : static_cast<T>(0);
    }
    bits[block >> 3] = byte;
  }
}

template <>
void forward_scalar<double>(const double* x, double* out, uint8_t* bits, int64_t begin, int64_t end, const Key& k) {
  for (int64_t block = begin; block < end; block += 8) {
    uint8_t byte = 0;
    for (int64_t i = block; i < std::min(block + 8, end); ++i) {
      const bool keep = element_random(static_cast<uint32_t>(i), k.k0, k.k1) >= k.threshold;
      byte |= static_cast<uint8_t>(keep) << (i - block);
      out[i] = keep ? x[i] * static_cast<double>(k.scale) : 0.0;
    }
    bits[block >> 3] = byte;
  }
}

template <typename T>
void backward_scalar(const T* g, const uint8_t* bits, T* out, int64_t begin, int64_t end, float scale) {
  for (int64_t i = begin; i < end; ++i) {
    const bool keep = (bits[i >> 3] >> (i & 7)) & 1;
    out[i] = keep ? static_cast<T>(static_cast<float>(g[i]) * scale) : static_cast<T>(0);
  }
}

template <>
void backward_scalar<double>(const double* g, const uint8_t* bits, double* out, int64_t begin, int64_t end,
                             float scale) {
  for (int64_t i = begin; i < end; ++i) {
    out[i] = ((bits[i >> 3] >> (i & 7)) & 1) ? g[i] * static_cast<double>(scale) : 0.0;
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
                                                      int64_t end, const Key& k) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i k0 = _mm256_set1_epi32(static_cast<int>(k.k0)), k1 = _mm256_set1_epi32(static_cast<int>(k.k1));
  const __m256i threshold = _mm256_set1_epi32(static_cast<int>(k.threshold));
  const __m256 scale = _mm256_set1_ps(k.scale);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256i index = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(i))), lanes);
    const __m256i r = mix32_avx2(_mm256_add_epi32(mix32_avx2(_mm256_xor_si256(index, k0)), k1));
    const __m256i keep = _mm256_cmpeq_epi32(_mm256_max_epu32(r, threshold), r);  // r >= threshold (unsigned)
    const __m256 y = _mm256_and_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), scale), _mm256_castsi256_ps(keep));
    _mm256_storeu_ps(out + i, y);
    bits[i >> 3] = static_cast<uint8_t>(_mm256_movemask_ps(_mm256_castsi256_ps(keep)));
  }
  if (i < end) forward_scalar<float>(x, out, bits, i, end, k);
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
void forward_f32_avx2(const float*, float*, uint8_t*, int64_t, int64_t, const Key&) {}
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
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input, double p) {
    const auto x = input.contiguous();
    const int64_t n = x.numel();
    auto out = at::empty_like(x, at::MemoryFormat::Contiguous);
    auto bits = at::empty({(n + 7) / 8}, x.options().dtype(torch::kByte));
    const uint64_t seed = next_seed();
    const Key key{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                  static_cast<uint32_t>(std::min(p * 4294967296.0, 4294967295.0)),
                  static_cast<float>(1.0 / (1.0 - p))};
    uint8_t* b = bits.data_ptr<uint8_t>();
    if (x.scalar_type() == at::kFloat && has_avx2()) {
      const float* xp = x.data_ptr<float>();
      float* op = out.data_ptr<float>();
      for_blocks(n, [&](int64_t begin, int64_t end) { forward_f32_avx2(xp, op, b, begin, end, key); });
    } else {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "mgca_dropout", [&] {
        const scalar_t* xp = x.data_ptr<scalar_t>();
        scalar_t* op = out.data_ptr<scalar_t>();
        for_blocks(n, [&](int64_t begin, int64_t end) { forward_scalar<scalar_t>(xp, op, b, begin, end, key); });
      });
    }
    ctx->save_for_backward({bits});
    ctx->saved_data["scale"] = static_cast<double>(key.scale);
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

}  // namespace

torch::Tensor fast_dropout(const torch::Tensor& x, double p, bool train) {
  if (!train || p == 0.0) return x;
  MGCA_CHECK(p > 0.0 && p < 1.0, "dropout probability must be in [0, 1), got {}", p);
  if (!x.device().is_cpu()) return at::dropout(x, p, true);
  // The counter is the 32-bit element index.
  MGCA_CHECK(x.numel() < (int64_t{1} << 32), "dropout: {} elements exceed the 2^32 counter", x.numel());
  return FastDropout::apply(x, p);
}

}  // namespace mgca::model
