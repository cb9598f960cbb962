// What every layer sees during a step: the backend, the planned buffers, and the flat parameter,
// gradient and state buffers (device pointers) laid out by the parameter table.
#pragma once
#include "engine/arena.h"
#include "engine/backend.h"
#include "engine/params.h"

namespace cxr {

struct StepContext {
  Backend& be;
  const Arena& arena;
  const ParamTable& table;
  float* params;  // trainable weights
  float* grads;   // their gradients, same offsets
  float* state;   // BN running statistics
  Workspace ws;   // convolution workspace
  bool training;  // BN with batch statistics (and running update) vs running statistics
  double bn_momentum = 0.99;  // running = momentum * running + (1 - momentum) * batch (Keras's default)

  float* param(int i) const { return params + table[i].offset; }
  float* grad(int i) const { return grads + table[i].offset; }
  float* state_of(int i) const { return state + table[i].offset; }
};

}  // namespace cxr
