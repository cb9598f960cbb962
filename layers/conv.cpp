#include "layers/conv.h"

namespace cxr {

void Conv2d::init(ParamTable& table, const std::string& name, int64_t out_c, int64_t in_c, int64_t k,
                  int64_t stride, int64_t pad) {
  param = table.add_conv(name, out_c, in_c, k);
  wshape = Shape{out_c, in_c, k, k};
  geom = ConvGeom{k, stride, pad};
}

void Conv2d::forward(const StepContext& s, const Tensor& y, const Tensor& x) const {
  s.be.conv2d_forward(y, x, s.param(param), wshape, geom, s.ws);
}

void Conv2d::backward_filter(const StepContext& s, const Tensor& dy, const Tensor& x) const {
  s.be.conv2d_backward_filter(s.grad(param), GradMode::Overwrite, wshape, dy, x, geom, s.ws);
}

void Conv2d::backward_data(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy) const {
  s.be.conv2d_backward_data(dx, mode, dy, s.param(param), wshape, geom, s.ws);
}

}  // namespace cxr
