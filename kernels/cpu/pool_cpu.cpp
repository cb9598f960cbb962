// CPU pooling: max (padding never wins), average (no padding), global average.
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/ops_cpu.h"

namespace cxr::cpu {

namespace {
// Index in the (H, W) plane of the first maximum of window (p, q) in row-major window order. The
// window is clipped to the plane once, so the loops carry no bounds tests (the per-element tests
// made the stem's max pool run at under 1 GB/s).
template <typename T>
int64_t window_argmax(const T* plane, int64_t H, int64_t W, int64_t p, int64_t q, const PoolGeom& g) {
  const int64_t h0 = p * g.stride - g.pad, w0 = q * g.stride - g.pad;
  const int64_t r0 = std::max<int64_t>(0, -h0), r1 = std::min<int64_t>(g.kernel, H - h0);
  const int64_t s0 = std::max<int64_t>(0, -w0), s1 = std::min<int64_t>(g.kernel, W - w0);
  // check_pool_shapes guarantees every window overlaps the input: r0 < r1 and s0 < s1.
  int64_t arg = (h0 + r0) * W + w0 + s0;
  T best = plane[arg];
  for (int64_t r = r0; r < r1; ++r) {
    const T* row = plane + (h0 + r) * W + w0;
    for (int64_t s = s0; s < s1; ++s)
      if (row[s] > best) best = row[s], arg = (h0 + r) * W + w0 + s;
  }
  return arg;
}
}  // namespace

// Separable: a window's maximum is the maximum over its rows of each row's maximum over its columns.
// Pass 1 takes every input row's maximum over each output column's (clipped) window into a (H, Q)
// scratch row block; pass 2 the maximum of the window's rows of it, contiguous and vectorisable. The
// per-window scan this replaces ran the stem's 3x3/2 pool at 1.1 GFLOP/s, 2.4 GB/s (`cxr profile`).
// Equal to the scan for every input without NaN (the maximum of a set does not depend on the order).
template <typename T>
void maxpool_forward(const View<T>& y, const View<T>& x, const PoolGeom& g) {
  check_pool_shapes(y.shape, x.shape, g, "maxpool_forward");
  CXR_CHECK(g.pad < g.kernel, "max pool padding ", g.pad, " must be smaller than its window ", g.kernel);
  const int64_t H = x.h(), W = x.w(), P = y.h(), Q = y.w();
  // Each output column's clipped window [c0, c1) in the input row.
  std::vector<int64_t> col_lo(static_cast<size_t>(Q)), col_hi(static_cast<size_t>(Q));
  for (int64_t q = 0; q < Q; ++q) {
    col_lo[size_t(q)] = std::max<int64_t>(0, q * g.stride - g.pad);
    col_hi[size_t(q)] = std::min<int64_t>(W, q * g.stride - g.pad + g.kernel);
  }
#pragma omp parallel
  {
    std::vector<T> rows(static_cast<size_t>(H * Q));
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < x.n(); ++n)
      for (int64_t c = 0; c < x.c(); ++c) {
        const T* in = x.plane(n, c);
        T* out = y.plane(n, c);
        for (int64_t h = 0; h < H; ++h) {
          const T* row = in + h * W;
          T* rm = rows.data() + h * Q;
          for (int64_t q = 0; q < Q; ++q) {
            T best = row[col_lo[size_t(q)]];
            for (int64_t w = col_lo[size_t(q)] + 1; w < col_hi[size_t(q)]; ++w) best = row[w] > best ? row[w] : best;
            rm[q] = best;
          }
        }
        for (int64_t p = 0; p < P; ++p) {
          const int64_t r0 = std::max<int64_t>(0, p * g.stride - g.pad);
          const int64_t r1 = std::min<int64_t>(H, p * g.stride - g.pad + g.kernel);
          T* o = out + p * Q;
          std::memcpy(o, rows.data() + r0 * Q, sizeof(T) * size_t(Q));
          for (int64_t r = r0 + 1; r < r1; ++r) {
            const T* rm = rows.data() + r * Q;
#pragma omp simd
            for (int64_t q = 0; q < Q; ++q) o[q] = rm[q] > o[q] ? rm[q] : o[q];
          }
        }
      }
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
      if (g.kernel == 2 && g.stride == 2) {  // the transitions' pool: the same sums, unrolled
        for (int64_t p = 0; p < P; ++p) {
          const T *a = in + 2 * p * W, *b = a + W;
          for (int64_t q = 0; q < Q; ++q)
            out[p * Q + q] = (((T(0) + a[2 * q]) + a[2 * q + 1]) + b[2 * q] + b[2 * q + 1]) * inv;
        }
        continue;
      }
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
      if (g.kernel == 2 && g.stride == 2) {  // windows tile the plane: each dx is written once
        for (int64_t p = 0; p < P; ++p) {
          T *a = gx + 2 * p * W, *b = a + W;
          for (int64_t q = 0; q < Q; ++q) {
            const T v = gy[p * Q + q] * inv;
            a[2 * q] = v, a[2 * q + 1] = v, b[2 * q] = v, b[2 * q + 1] = v;
          }
          if (W > 2 * Q) a[W - 1] = 0, b[W - 1] = 0;  // an odd last column no window covers
        }
        if (H > 2 * P) std::memset(gx + (H - 1) * W, 0, sizeof(T) * size_t(W));  // an odd last row
        continue;
      }
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
