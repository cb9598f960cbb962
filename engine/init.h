// Parameter initialisation on host vectors laid out by a ParamTable.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/params.h"

namespace cxr {

// Keras defaults: Glorot-uniform convolution and dense kernels, zero bias, gamma 1, beta 0,
// moving mean 0, moving variance 1. `seed` makes it reproducible.
void init_keras_default(const ParamTable& table, std::vector<float>& params, std::vector<float>& state,
                        uint64_t seed);

// The deterministic test generator shared with the Keras fixture script (see its docstring):
// tensor t, Keras-layout element i, v = hash_signed(t, i); conv kernel v*sqrt(6/fan_in), gamma 1+v/4,
// beta 2+v/4, moving mean v/4, moving variance 1+v/2, dense kernel v*sqrt(6/(in+out)), bias v/4.
void init_test_generator(const ParamTable& table, std::vector<float>& params, std::vector<float>& state);

}  // namespace cxr
