#include "layers/batchnorm.h"

namespace cxr {

void BatchNorm::init(ParamTable& table, MemoryPlan& plan, const std::string& name, int64_t c) {
  gamma = table.add_batchnorm(name, c);
  channels = c;
  stats = plan.add_floats(name + " batch statistics", MemCategory::BnState, 2 * c);
}

void BatchNorm::forward(const StepContext& s, const Tensor& y, const Tensor& x, bool relu) const {
  CXR_CHECK(x.c() == channels, "batch norm over ", channels, " channels given input ", x.shape.str());
  float* rm = s.state_of(gamma + 2);
  float* rv = s.state_of(gamma + 3);
  if (s.training) {
    const double n = double(x.n() * x.h() * x.w());
    const double correction = n > 1 ? n / (n - 1) : 1.0;  // Note [BN running variance]
    s.be.batchnorm_stats(mean(s), invstd(s), rm, rv, x, kEpsilon, s.bn_momentum, correction);
  } else {
    s.be.batchnorm_inference_stats(mean(s), invstd(s), rm, rv, channels, kEpsilon);
  }
  s.be.batchnorm_apply(y, x, s.param(gamma), s.param(gamma + 1), mean(s), invstd(s), relu);
}

void BatchNorm::recompute(const StepContext& s, const Tensor& y, const Tensor& x, bool relu) const {
  s.be.batchnorm_apply(y, x, s.param(gamma), s.param(gamma + 1), mean(s), invstd(s), relu);
}

void BatchNorm::backward(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy,
                         const Tensor& x) const {
  s.be.batchnorm_backward(dx, mode, s.grad(gamma), s.grad(gamma + 1), dy, x, s.param(gamma), mean(s),
                          invstd(s));
}

}  // namespace cxr
