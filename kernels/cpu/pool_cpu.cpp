// CPU pooling: max (padding never wins), average (no padding), global average.
#include <cstring>
#include <limits>

#include "kernels/cpu/ops_cpu.h"

namespace cxr::cpu {

namespace {
// Index in the (H, W) plane of the first maximum of window (p, q) in row-major window order.
template <typename T>
int64_t window_argmax(const T* plane, int64_t H, int64_t W, int64_t p, int64_t q, const PoolGeom& g) {
  T best = -std::numeric_limits<T>::infinity();
  int64_t arg = -1;
  for (int64_t r = 0; r < g.kernel; ++r) {
    const int64_t ih = p * g.stride - g.pad + r;
    if (ih < 0 || ih >= H) continue;
    for (int64_t s = 0; s < g.kernel; ++s) {
      const int64_t iw = q * g.stride - g.pad + s;
      if (iw < 0 || iw >= W) continue;
      if (arg < 0 || plane[ih * W + iw] > best) best = plane[ih * W + iw], arg = ih * W + iw;
    }
  }
  return arg;  // never -1: check_pool_shapes guarantees every window overlaps the input
}
}  // namespace

template <typename T>
void maxpool_forward(const View<T>& y, const View<T>& x, const PoolGeom& g) {
  check_pool_shapes(y.shape, x.shape, g, "maxpool_forward");
  CXR_CHECK(g.pad < g.kernel, "max pool padding ", g.pad, " must be smaller than its window ", g.kernel);
  const int64_t H = x.h(), W = x.w(), P = y.h(), Q = y.w();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < x.n(); ++n)
    for (int64_t c = 0; c < x.c(); ++c) {
      const T* in = x.plane(n, c);
      T* out = y.plane(n, c);
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) out[p * Q + q] = in[window_argmax(in, H, W, p, q, g)];
    }
}

template <typename T>
void maxpool_backward(const View<T>& dx, const View<T>& dy, const View<T>& x, const PoolGeom& g) {
  check_pool_shapes(dy.shape, x.shape, g, "maxpool_backward");
  if (dx.shape != x.shape) CXR_FAIL("maxpool_backward: dx ", dx.shape.str(), " vs x ", x.shape.str());
  const int64_t H = x.h(), W = x.w(), P = dy.h(), Q = dy.w();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < x.n(); ++n)
    for (int64_t c = 0; c < x.c(); ++c) {
      const T* in = x.plane(n, c);
      const T* gy = dy.plane(n, c);
      T* gx = dx.plane(n, c);
      std::memset(gx, 0, sizeof(T) * size_t(H * W));
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) gx[window_argmax(in, H, W, p, q, g)] += gy[p * Q + q];
    }
}

template <typename T>
void avgpool_forward(const View<T>& y, const View<T>& x, const PoolGeom& g) {
  check_pool_shapes(y.shape, x.shape, g, "avgpool_forward");
  CXR_CHECK(g.pad == 0, "average pooling supports no padding, got ", g.pad);
  const int64_t W = x.w(), P = y.h(), Q = y.w();
  const T inv = T(1) / T(g.kernel * g.kernel);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < x.n(); ++n)
    for (int64_t c = 0; c < x.c(); ++c) {
      const T* in = x.plane(n, c);
      T* out = y.plane(n, c);
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          T s = 0;
          for (int64_t r = 0; r < g.kernel; ++r)
            for (int64_t t = 0; t < g.kernel; ++t) s += in[(p * g.stride + r) * W + q * g.stride + t];
          out[p * Q + q] = s * inv;
        }
    }
}

template <typename T>
void avgpool_backward(const View<T>& dx, const View<T>& dy, const PoolGeom& g) {
  check_pool_shapes(dy.shape, dx.shape, g, "avgpool_backward");
  CXR_CHECK(g.pad == 0, "average pooling supports no padding, got ", g.pad);
  const int64_t H = dx.h(), W = dx.w(), P = dy.h(), Q = dy.w();
  const T inv = T(1) / T(g.kernel * g.kernel);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < dx.n(); ++n)
    for (int64_t c = 0; c < dx.c(); ++c) {
      const T* gy = dy.plane(n, c);
      T* gx = dx.plane(n, c);
      std::memset(gx, 0, sizeof(T) * size_t(H * W));
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q)
          for (int64_t r = 0; r < g.kernel; ++r)
            for (int64_t t = 0; t < g.kernel; ++t) gx[(p * g.stride + r) * W + q * g.stride + t] += gy[p * Q + q] * inv;
    }
}

template <typename T>
void global_avgpool_forward(const View<T>& y, const View<T>& x) {
  if (y.shape != Shape{x.n(), x.c(), 1, 1})
    CXR_FAIL("global_avgpool_forward: y ", y.shape.str(), " for x ", x.shape.str());
  const int64_t HW = x.h() * x.w();
  for (int64_t n = 0; n < x.n(); ++n)
    for (int64_t c = 0; c < x.c(); ++c) {
      const T* p = x.plane(n, c);
      double s = 0;
      for (int64_t i = 0; i < HW; ++i) s += double(p[i]);
      *y.plane(n, c) = T(s / double(HW));
    }
}

template <typename T>
void global_avgpool_backward(const View<T>& dx, const View<T>& dy) {
  if (dy.shape != Shape{dx.n(), dx.c(), 1, 1})
    CXR_FAIL("global_avgpool_backward: dy ", dy.shape.str(), " for dx ", dx.shape.str());
  const int64_t HW = dx.h() * dx.w();
  for (int64_t n = 0; n < dx.n(); ++n)
    for (int64_t c = 0; c < dx.c(); ++c) {
      const T v = *dy.plane(n, c) / T(HW);
      T* p = dx.plane(n, c);
      for (int64_t i = 0; i < HW; ++i) p[i] = v;
    }
}

#define CXR_INSTANTIATE(T)                                                                       \
  template void maxpool_forward<T>(const View<T>&, const View<T>&, const PoolGeom&);            \
  template void maxpool_backward<T>(const View<T>&, const View<T>&, const View<T>&, const PoolGeom&); \
  template void avgpool_forward<T>(const View<T>&, const View<T>&, const PoolGeom&);            \
  template void avgpool_backward<T>(const View<T>&, const View<T>&, const PoolGeom&);           \
  template void global_avgpool_forward<T>(const View<T>&, const View<T>&);                      \
  template void global_avgpool_backward<T>(const View<T>&, const View<T>&);
CXR_INSTANTIATE(float)
CXR_INSTANTIATE(double)
#undef CXR_INSTANTIATE

}  // namespace cxr::cpu
