#include "mgca/util/rng.h"

#include <cmath>
#include <numeric>

#include "mgca/util/error.h"

namespace mgca::util {
namespace {
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t fnv1a(std::string_view bytes, uint64_t hash) {
  for (unsigned char c : bytes) hash = (hash ^ c) * 0x100000001b3ULL;
  return hash;
}

uint64_t fnv1a(int64_t value, uint64_t hash) {
  for (int i = 0; i < 8; ++i) hash = (hash ^ ((static_cast<uint64_t>(value) >> (8 * i)) & 0xff)) * 0x100000001b3ULL;
  return hash;
}

uint64_t make_key(std::initializer_list<uint64_t> parts) {
  uint64_t key = 0x6D676361ULL;  // "mgca"
  for (uint64_t part : parts) key = mix64(key ^ mix64(part));
  return key;
}

Rng::Rng(uint64_t key) {
  uint64_t x = key;
  for (auto& word : state_) {
    x += 0x9E3779B97F4A7C15ULL;
    word = mix64(x);
  }
}

void Rng::set_state(const State& state) {
  MGCA_CHECK(state[0] | state[1] | state[2] | state[3], "xoshiro256** state must not be all zero");
  state_ = state;
  has_spare_normal_ = false;
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

int64_t Rng::randint(int64_t lo, int64_t hi) {
  MGCA_CHECK(lo < hi, "randint needs lo < hi, got [{}, {})", lo, hi);
  const uint64_t range = static_cast<uint64_t>(hi - lo);
  // Lemire's nearly-divisionless method on 64 bits.
  unsigned __int128 product = static_cast<unsigned __int128>(next_u64()) * range;
  uint64_t low = static_cast<uint64_t>(product);
  if (low < range) {
    const uint64_t threshold = (0 - range) % range;
    while (low < threshold) {
      product = static_cast<unsigned __int128>(next_u64()) * range;
      low = static_cast<uint64_t>(product);
    }
  }
  return lo + static_cast<int64_t>(product >> 64);
}

double Rng::normal() {
  if (has_spare_normal_) {
    has_spare_normal_ = false;
    return spare_normal_;
  }
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  const double radius = std::sqrt(-2.0 * std::log(u1));
  const double angle = 2.0 * M_PI * u2;
  spare_normal_ = radius * std::sin(angle);
  has_spare_normal_ = true;
  return radius * std::cos(angle);
}

std::vector<int64_t> permutation(int64_t n, uint64_t key) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  Rng rng(key);
  rng.shuffle(order);
  return order;
}

}  // namespace mgca::util
