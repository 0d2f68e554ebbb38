// Counter-keyed random numbers that are identical on every platform, rank
// count and thread count.
//
// Every random choice of a sample is drawn from Rng(key(seed, epoch, index, ...)),
// so the same sample gets the same crop whether it is loaded by rank 0 of 1 or
// rank 3 of 4, by thread 0 or thread 7. The distributions below are our own
// (std:: distributions differ between standard libraries), so runs reproduce
// bit for bit across machines.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

namespace mgca::util {

// SplitMix64 finaliser: a bijective 64-bit mix.
uint64_t mix64(uint64_t x);

// 64-bit FNV-1a over `bytes`, continuing `hash` (a stable key for a name).
constexpr uint64_t kFnv1aBasis = 0xcbf29ce484222325ULL;
uint64_t fnv1a(std::string_view bytes, uint64_t hash = kFnv1aBasis);
// The same over the 8 bytes of `value`, least significant first (any endianness).
uint64_t fnv1a(int64_t value, uint64_t hash);

// A stable 64-bit key from an ordered list of integers (seed, epoch, index, stream...).
uint64_t make_key(std::initializer_list<uint64_t> parts);

// xoshiro256** seeded from a key through SplitMix64.
class Rng {
 public:
  using State = std::array<uint64_t, 4>;

  explicit Rng(uint64_t key = 0);

  uint64_t next_u64();
  uint32_t next_u32() { return static_cast<uint32_t>(next_u64() >> 32); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform();
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [lo, hi), unbiased (Lemire's method). Requires lo < hi.
  int64_t randint(int64_t lo, int64_t hi);
  // Standard normal (Box–Muller, both values used).
  double normal();
  bool bernoulli(double p) { return uniform() < p; }
  // Fisher–Yates shuffle.
  template <typename T>
  void shuffle(std::vector<T>& values) {
    for (int64_t i = static_cast<int64_t>(values.size()) - 1; i > 0; --i) {
      const int64_t j = randint(0, i + 1);
      std::swap(values[i], values[j]);
    }
  }

  // Full state, for checkpoints.
  State state() const { return state_; }
  void set_state(const State& state);

 private:
  State state_;
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

// The permutation of [0, n) for a key: the same on every rank.
std::vector<int64_t> permutation(int64_t n, uint64_t key);

}  // namespace mgca::util
