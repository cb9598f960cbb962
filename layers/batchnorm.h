// Batch normalisation layer (Keras semantics, epsilon 1.001e-5, momentum from the step context,
// 0.99 by default as Keras's), optionally fused
// with the ReLU that follows it everywhere in DenseNet.
//
// Note [BN running variance]: Keras (tf.keras 2.21, checked numerically by the fixture script)
// normalises with the biased batch variance but folds the unbiased one, times n/(n-1) with
// n = N*H*W, into moving_variance. cuDNN's BatchNormalizationForwardTraining does the same; PyTorch
// too. We follow it.
//
// Note [BN recomputation]: training keeps only the BN input and this layer's batch mean and
// 1/std (2*C floats); backward recomputes the normalised (and ReLU'd) output with recompute().
//
// Note [BN statistics once per channel]: in a dense block every BN reads a prefix [0, C) of the
// block buffer, and a channel never changes after the layer that wrote it, so its batch mean and
// variance are the same for every later BN of the block (only gamma and beta differ). Those BNs
// share one statistics buffer per block (init_shared): a training forward computes the statistics
// of its fresh channels [fresh_from, C) only, and folds all C into its own running statistics
// (batchnorm_running_update). Inference writes each BN's running-statistics-derived values into the
// shared buffer just before it applies them (no backward follows an inference forward).
#pragma once
#include "layers/layer.h"

namespace cxr {

struct BatchNorm {
  static constexpr double kEpsilon = 1.001e-5;

  int gamma = -1;  // table rows gamma, beta, moving_mean, moving_variance follow each other
  int64_t channels = 0;
  MemoryPlan::Id stats = 0;  // mean of channel c at [c], its invstd at [stride + c]
  int64_t stride = 0;        // channels, or the block's width when shared

  void init(ParamTable& table, MemoryPlan& plan, const std::string& name, int64_t c);
  // A BN over channels [0, c) of a block whose statistics buffer (2 rows of block_c) it shares.
  void init_shared(ParamTable& table, const std::string& name, int64_t c, MemoryPlan::Id block_stats,
                   int64_t block_c);
  // y = bn(x) (+ReLU). Training: batch statistics, saved, and the running update; inference:
  // running statistics. y may alias x. fresh_from > 0 (shared statistics only): a training forward
  // computes channels [fresh_from, C) and trusts the buffer for the rest (Note [BN statistics once
  // per channel]).
  void forward(const StepContext& s, const Tensor& y, const Tensor& x, bool relu, int64_t fresh_from = 0) const;
  // y = bn(x) (+ReLU) with the statistics saved by the last forward.
  void recompute(const StepContext& s, const Tensor& y, const Tensor& x, bool relu) const;
  // dgamma, dbeta (=); dx (=|+=). dy is w.r.t. the BN output (ReLU mask already applied).
  void backward(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy,
                const Tensor& x) const;
  // The same for the BN fused with its ReLU: dy is w.r.t. the ReLU output; the mask comes from x.
  void backward_relu(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy,
                     const Tensor& x) const;

  // The data gradient through an inference forward (running statistics, constants of x): writes
  // this BN's inference statistics into its statistics buffer (shared ones too), then dx (=|+=)
  // from dy w.r.t. the ReLU output (Backend::batchnorm_relu_backward_frozen). No parameter gradient.
  void backward_relu_frozen(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy,
                            const Tensor& x) const;

 private:
  void backward_synced(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x,
                       bool relu) const;
  float* mean(const StepContext& s) const { return s.arena.floats(stats); }
  float* invstd(const StepContext& s) const { return s.arena.floats(stats) + stride; }
};

}  // namespace cxr
