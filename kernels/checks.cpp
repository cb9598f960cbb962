#include "kernels/checks.h"

namespace cxr {

void check_conv_shapes(const Shape& y, const Shape& x, const Shape& w, const ConvGeom& g, const char* op) {
  const bool ok = w.h == g.kernel && w.w == g.kernel && w.c == x.c && y.c == w.n && y.n == x.n &&
                  y.h == g.out_size(x.h) && y.w == g.out_size(x.w) && y.h > 0 && y.w > 0;
  if (!ok)
    CXR_FAIL(op, ": inconsistent shapes: y ", y.str(), ", x ", x.str(), ", w ", w.str(), ", kernel ",
             g.kernel, " stride ", g.stride, " pad ", g.pad, " (expected y (", x.n, ", ", w.n, ", ",
             g.out_size(x.h), ", ", g.out_size(x.w), "))");
}

void check_pool_shapes(const Shape& y, const Shape& x, const PoolGeom& g, const char* op) {
  if (!(y.n == x.n && y.c == x.c && y.h == g.out_size(x.h) && y.w == g.out_size(x.w) && y.h > 0 &&
        y.w > 0))
    CXR_FAIL(op, ": inconsistent shapes: y ", y.str(), ", x ", x.str(), ", window ", g.kernel,
             " stride ", g.stride, " pad ", g.pad);
}

void check_plane_contiguous(const Tensor& t, const char* what) {
  CXR_CHECK(t.batch_stride >= t.c() * t.h() * t.w(), what, ": batch stride ", t.batch_stride,
            " smaller than C*H*W of ", t.shape.str());
}

}  // namespace cxr
