// What every layer sees during a step: the backend, the planned buffers, and the flat parameter,
// gradient and state buffers (device pointers) laid out by the parameter table.
#pragma once
#include "engine/arena.h"
#include "engine/backend.h"
#include "engine/params.h"

#include <cstdint>

namespace cxr {

// Batch normalisation synchronised across the ranks of a data-parallel run (`--sync-bn`; Note [Data
// parallel] in engine/data_parallel.h): a training BN then normalises with the statistics of the
// global batch, and its backward uses the global batch's two per-channel sums, so that N ranks take
// the step one process would take with the whole batch. Every rank holds the same number of values
// per channel (its share of the global batch).
class BatchNormSync {
 public:
  virtual ~BatchNormSync() = default;
  virtual int ranks() const = 0;
  // mean, invstd (device, `channels`): this rank's batch statistics in, the global batch's out.
  virtual void batch_statistics(float* mean, float* invstd, int64_t channels, double eps) = 0;
  // The two sums of Backend::batchnorm_backward_reduce over this rank's share (device, `channels`
  // each) -> their sums over every rank, in device buffers the sync owns (valid until its next call).
  virtual void backward_sums(const float* sum_dy_xhat, const float* sum_dy, int64_t channels,
                             const float** global_dy_xhat, const float** global_dy) = 0;
};

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
  BatchNormSync* bn_sync = nullptr;  // training BNs over the global batch (--sync-bn); null: this rank's batch

  float* param(int i) const { return params + table[i].offset; }
  float* grad(int i) const { return grads + table[i].offset; }
  float* state_of(int i) const { return state + table[i].offset; }
};

}  // namespace cxr
