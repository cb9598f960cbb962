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
#pragma once
#include "layers/layer.h"

namespace cxr {

struct BatchNorm {
  static constexpr double kEpsilon = 1.001e-5;

  int gamma = -1;  // table rows gamma, beta, moving_mean, moving_variance follow each other
  int64_t channels = 0;
  MemoryPlan::Id stats = 0;  // (2, C): mean, then invstd, of the last forward

  void init(ParamTable& table, MemoryPlan& plan, const std::string& name, int64_t c);
  // y = bn(x) (+ReLU). Training: batch statistics, saved, and the running update; inference:
  // running statistics. y may alias x.
  void forward(const StepContext& s, const Tensor& y, const Tensor& x, bool relu) const;
  // y = bn(x) (+ReLU) with the statistics saved by the last forward.
  void recompute(const StepContext& s, const Tensor& y, const Tensor& x, bool relu) const;
  // dgamma, dbeta (=); dx (=|+=). dy is w.r.t. the BN output (ReLU mask already applied).
  void backward(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy,
                const Tensor& x) const;

 private:
  float* mean(const StepContext& s) const { return s.arena.floats(stats); }
  float* invstd(const StepContext& s) const { return s.arena.floats(stats) + channels; }
};

}  // namespace cxr
