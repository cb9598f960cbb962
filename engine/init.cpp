#include "engine/init.h"

#include <cmath>
#include <random>

#include "engine/rng.h"

namespace cxr {

namespace {
std::vector<float>& buffer_for(const ParamEntry& e, std::vector<float>& params, std::vector<float>& state) {
  return e.trainable ? params : state;
}
}  // namespace

void init_keras_default(const ParamTable& table, std::vector<float>& params, std::vector<float>& state,
                        uint64_t seed) {
  params.assign(size_t(table.trainable_count()), 0.0f);
  state.assign(size_t(table.state_count()), 0.0f);
  std::mt19937_64 rng(seed);
  for (const auto& e : table.entries()) {
    float* dst = buffer_for(e, params, state).data() + e.offset;
    switch (e.role) {
      case ParamRole::ConvKernel:
      case ParamRole::DenseKernel: {
        // Glorot uniform: limit sqrt(6 / (fan_in + fan_out)), fans including the receptive field.
        const auto& ks = e.keras_shape;
        const int64_t receptive = ks.size() == 4 ? ks[0] * ks[1] : 1;
        const double fan_in = double(ks[ks.size() - 2] * receptive), fan_out = double(ks.back() * receptive);
        std::uniform_real_distribution<float> d(-1.0f, 1.0f);
        const float limit = float(std::sqrt(6.0 / (fan_in + fan_out)));
        for (int64_t i = 0; i < e.numel; ++i) dst[i] = limit * d(rng);
        break;
      }
      case ParamRole::BnGamma:
      case ParamRole::BnMovingVariance:
        std::fill(dst, dst + e.numel, 1.0f);
        break;
      default:
        std::fill(dst, dst + e.numel, 0.0f);
    }
  }
}

void init_test_generator(const ParamTable& table, std::vector<float>& params, std::vector<float>& state) {
  params.assign(size_t(table.trainable_count()), 0.0f);
  state.assign(size_t(table.state_count()), 0.0f);
  std::vector<float> keras;
  for (const auto& e : table.entries()) {
    keras.resize(size_t(e.numel));
    const auto& ks = e.keras_shape;
    double scale = 0.25, offset = 0.0;
    switch (e.role) {
      case ParamRole::ConvKernel: scale = std::sqrt(6.0 / double(ks[0] * ks[1] * ks[2])); break;
      case ParamRole::DenseKernel: scale = std::sqrt(6.0 / double(ks[0] + ks[1])); break;
      case ParamRole::BnGamma: offset = 1.0; break;
      case ParamRole::BnBeta: offset = 2.0; break;  // keeps pre-activations off the ReLU kink
      case ParamRole::BnMovingVariance: offset = 1.0, scale = 0.5; break;
      default: break;
    }
    for (int64_t i = 0; i < e.numel; ++i)
      keras[size_t(i)] = float(offset + scale * hash_signed(uint64_t(e.index), uint64_t(i)));
    keras_to_ours(e, keras.data(), buffer_for(e, params, state).data() + e.offset);
  }
}

}  // namespace cxr
