// Small deterministic generators. splitmix64 is also the "tiny deterministic generator" that the
// Keras reference fixture (tests/fixtures/make_densenet121_fixture.py) uses for weights and inputs,
// so both sides draw identical values without storing them.
#pragma once
#include <cstdint>

namespace cxr {

inline uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// unit(stream, i) in [0, 1) with 24 random bits; v(stream, i) = 2 unit - 1 in [-1, 1).
inline double hash_unit(uint64_t stream, uint64_t i) {
  return double(splitmix64((stream << 32) | i) >> 40) * (1.0 / 16777216.0);
}
inline double hash_signed(uint64_t stream, uint64_t i) { return 2.0 * hash_unit(stream, i) - 1.0; }

}  // namespace cxr
