#include "layers/batchnorm.h"

namespace cxr {

void BatchNorm::init(ParamTable& table, MemoryPlan& plan, const std::string& name, int64_t c) {
  gamma = table.add_batchnorm(name, c);
  channels = c;
  stats = plan.add_floats(name + " batch statistics", MemCategory::BnState, 2 * c);
  stride = c;
}

void BatchNorm::init_shared(ParamTable& table, const std::string& name, int64_t c, MemoryPlan::Id block_stats,
                            int64_t block_c) {
  CXR_CHECK(c <= block_c, name, ": ", c, " channels in a block of ", block_c);
  gamma = table.add_batchnorm(name, c);
  channels = c;
  stats = block_stats;
  stride = block_c;
}

void BatchNorm::forward(const StepContext& s, const Tensor& y, const Tensor& x, bool relu, int64_t fresh_from) const {
  CXR_CHECK(x.c() == channels, "batch norm over ", channels, " channels given input ", x.shape.str());
  CXR_CHECK(fresh_from >= 0 && fresh_from <= channels, "fresh channels from ", fresh_from, " of ", channels);
  float* rm = s.state_of(gamma + 2);
  float* rv = s.state_of(gamma + 3);
  if (s.training && s.bn_sync) {
    // Global statistics of the fresh channels, then every channel's running update from them.
    const double n = double(x.n() * x.h() * x.w()) * s.bn_sync->ranks();
    const double correction = n > 1 ? n / (n - 1) : 1.0;  // Note [BN running variance], global n
    if (fresh_from < channels) {
      s.be.batchnorm_stats(mean(s) + fresh_from, invstd(s) + fresh_from, nullptr, nullptr,
                           x.channels(fresh_from, channels), kEpsilon, s.bn_momentum, correction);
      s.bn_sync->batch_statistics(mean(s) + fresh_from, invstd(s) + fresh_from, channels - fresh_from, kEpsilon);
    }
    s.be.batchnorm_running_update(rm, rv, mean(s), invstd(s), channels, kEpsilon, s.bn_momentum, correction);
  } else if (s.training) {
    const double n = double(x.n() * x.h() * x.w());
    const double correction = n > 1 ? n / (n - 1) : 1.0;  // Note [BN running variance]
    if (fresh_from == 0) {
      s.be.batchnorm_stats(mean(s), invstd(s), rm, rv, x, kEpsilon, s.bn_momentum, correction);
    } else {  // Note [BN statistics once per channel]
      if (fresh_from < channels)
        s.be.batchnorm_stats(mean(s) + fresh_from, invstd(s) + fresh_from, nullptr, nullptr,
                             x.channels(fresh_from, channels), kEpsilon, s.bn_momentum, correction);
      s.be.batchnorm_running_update(rm, rv, mean(s), invstd(s), channels, kEpsilon, s.bn_momentum, correction);
    }
  } else {
    s.be.batchnorm_inference_stats(mean(s), invstd(s), rm, rv, channels, kEpsilon);
  }
  s.be.batchnorm_apply(y, x, s.param(gamma), s.param(gamma + 1), mean(s), invstd(s), relu);
}

void BatchNorm::recompute(const StepContext& s, const Tensor& y, const Tensor& x, bool relu) const {
  s.be.batchnorm_apply(y, x, s.param(gamma), s.param(gamma + 1), mean(s), invstd(s), relu);
}

// --sync-bn: this rank's sums are its dgamma and dbeta (the gradient all-reduce averages them like
// every other gradient); dx takes the sums over the global batch.
void BatchNorm::backward_synced(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy,
                                const Tensor& x, bool relu) const {
  float* dgamma = s.grad(gamma);
  float* dbeta = s.grad(gamma + 1);
  s.be.batchnorm_backward_reduce(dgamma, dbeta, dy, x, s.param(gamma), s.param(gamma + 1), mean(s), invstd(s), relu);
  const float *global_dy_xhat = nullptr, *global_dy = nullptr;
  s.bn_sync->backward_sums(dgamma, dbeta, channels, &global_dy_xhat, &global_dy);
  const double count = double(x.n() * x.h() * x.w()) * s.bn_sync->ranks();
  s.be.batchnorm_backward_apply(dx, mode, dy, x, s.param(gamma), s.param(gamma + 1), mean(s), invstd(s),
                                global_dy_xhat, global_dy, count, relu);
}

void BatchNorm::backward(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy,
                         const Tensor& x) const {
  if (s.bn_sync) return backward_synced(s, dx, mode, dy, x, false);
  s.be.batchnorm_backward(dx, mode, s.grad(gamma), s.grad(gamma + 1), dy, x, s.param(gamma), mean(s),
                          invstd(s));
}

void BatchNorm::backward_relu(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy,
                              const Tensor& x) const {
  if (s.bn_sync) return backward_synced(s, dx, mode, dy, x, true);
  s.be.batchnorm_relu_backward(dx, mode, s.grad(gamma), s.grad(gamma + 1), dy, x, s.param(gamma), s.param(gamma + 1),
                               mean(s), invstd(s));
}

void BatchNorm::backward_relu_frozen(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy,
                                     const Tensor& x) const {
  CXR_CHECK(x.c() == channels, "batch norm over ", channels, " channels given input ", x.shape.str());
  s.be.batchnorm_inference_stats(mean(s), invstd(s), s.state_of(gamma + 2), s.state_of(gamma + 3), channels,
                                 kEpsilon);
  s.be.batchnorm_relu_backward_frozen(dx, mode, dy, x, s.param(gamma), s.param(gamma + 1), mean(s), invstd(s));
}

}  // namespace cxr
