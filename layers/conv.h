// Convolution layer without bias: owns its parameter-table row and geometry, nothing else.
#pragma once
#include "layers/layer.h"

namespace cxr {

struct Conv2d {
  int param = -1;
  Shape wshape;  // (K, C, R, R)
  ConvGeom geom;

  void init(ParamTable& table, const std::string& name, int64_t out_c, int64_t in_c, int64_t k,
            int64_t stride, int64_t pad);
  Shape out_shape(const Shape& x) const {
    return Shape{x.n, wshape.n, geom.out_size(x.h), geom.out_size(x.w)};
  }
  // For a packed input x and an output (and its gradient) `y_batch_stride` floats apart per image:
  // a channel slice of a block buffer when the layer writes into one.
  size_t workspace_bytes(Backend& be, const Shape& x, int64_t y_batch_stride) const {
    return be.conv2d_workspace_bytes(out_shape(x), y_batch_stride, x, x.c * x.h * x.w, wshape, geom);
  }
  void forward(const StepContext& s, const Tensor& y, const Tensor& x) const;
  // dW (=) from dy and the layer's input x.
  void backward_filter(const StepContext& s, const Tensor& dy, const Tensor& x) const;
  // dx (=|+=) from dy.
  void backward_data(const StepContext& s, const Tensor& dx, GradMode mode, const Tensor& dy) const;
};

}  // namespace cxr
