// CPU convolution: per image, im2col into the workspace, then one GEMM (OpenBLAS).
//   forward:         Y_n (K, PQ)   = W (K, CRR) . col(X_n) (CRR, PQ)
//   backward data:   col (CRR, PQ) = W^T . dY_n;  dX_n (+)= col2im(col)
//   backward filter: dW (K, CRR)  (+)= sum_n dY_n . col(X_n)^T
// A 1x1 stride-1 unpadded convolution skips im2col: X_n already is the (C, HW) matrix.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops_cpu.h"

namespace cxr::cpu {

namespace {

bool is_pointwise(const ConvGeom& g) { return g.kernel == 1 && g.stride == 1 && g.pad == 0; }

// The output columns q whose input column q*stride - pad + s lies inside [0, W): [q0, q1).
inline void valid_columns(int64_t W, int64_t Q, int64_t stride, int64_t off, int64_t* q0, int64_t* q1) {
  // iw = q*stride + off >= 0  <=>  q >= ceil(-off / stride);  iw < W  <=>  q <= floor((W - 1 - off) / stride)
  *q0 = off >= 0 ? 0 : (-off + stride - 1) / stride;
  *q1 = W - 1 - off < 0 ? 0 : std::min(Q, (W - 1 - off) / stride + 1);
  if (*q1 < *q0) *q1 = *q0;
}

// col[(c*R + r)*R + s][p*Q + q] = x[c][p*stride - pad + r][q*stride - pad + s] (0 outside).
template <typename T>
void im2col(T* col, const T* x, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q, const ConvGeom& g) {
  const int64_t R = g.kernel;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t c = 0; c < C; ++c)
    for (int64_t rs = 0; rs < R * R; ++rs) {
      const int64_t r = rs / R, s = rs % R, off = s - g.pad;
      int64_t q0, q1;
      valid_columns(W, Q, g.stride, off, &q0, &q1);
      T* dst = col + (c * R * R + rs) * P * Q;
      const T* src = x + c * H * W;
      for (int64_t p = 0; p < P; ++p) {
        const int64_t ih = p * g.stride - g.pad + r;
        T* d = dst + p * Q;
        if (ih < 0 || ih >= H) {
          std::memset(d, 0, sizeof(T) * size_t(Q));
          continue;
        }
        const T* row = src + ih * W + off;
        std::fill(d, d + q0, T(0));
        if (g.stride == 1)
          std::memcpy(d + q0, row + q0, sizeof(T) * size_t(q1 - q0));
        else
          for (int64_t q = q0; q < q1; ++q) d[q] = row[q * g.stride];
        std::fill(d + q1, d + Q, T(0));
      }
    }
}

// x[c][ih][iw] += col[...] for every (r, s, p, q) that im2col read from there (its adjoint).
template <typename T>
void col2im_add(T* x, const T* col, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q, const ConvGeom& g) {
  const int64_t R = g.kernel;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c)
    for (int64_t rs = 0; rs < R * R; ++rs) {  // one thread per channel: no write races
      const int64_t r = rs / R, s = rs % R, off = s - g.pad;
      int64_t q0, q1;
      valid_columns(W, Q, g.stride, off, &q0, &q1);
      const T* src = col + (c * R * R + rs) * P * Q;
      T* dst = x + c * H * W;
      for (int64_t p = 0; p < P; ++p) {
        const int64_t ih = p * g.stride - g.pad + r;
        if (ih < 0 || ih >= H) continue;
        T* row = dst + ih * W + off;
        const T* in = src + p * Q;
        if (g.stride == 1)
          for (int64_t q = q0; q < q1; ++q) row[q] += in[q];
        else
          for (int64_t q = q0; q < q1; ++q) row[q * g.stride] += in[q];
      }
    }
}

}  // namespace

int64_t conv2d_col_elems(const Shape& y, const Shape& x, const ConvGeom& g) {
  return is_pointwise(g) ? 0 : x.c * g.kernel * g.kernel * y.h * y.w;
}

template <typename T>
void conv2d_forward(const View<T>& y, const View<T>& x, const T* w, const Shape& ws, const ConvGeom& g, T* col) {
  check_conv_shapes(y.shape, x.shape, ws, g, "conv2d_forward");
  const int64_t K = ws.n, C = x.c(), CRR = C * g.kernel * g.kernel, PQ = y.h() * y.w();
  for (int64_t n = 0; n < x.n(); ++n) {
    const T* b = x.plane(n, 0);
    if (!is_pointwise(g)) {
      im2col(col, b, C, x.h(), x.w(), y.h(), y.w(), g);
      b = col;
    }
    gemm(false, false, K, PQ, CRR, T(1), w, CRR, b, PQ, T(0), y.plane(n, 0), PQ);
  }
}

template <typename T>
void conv2d_backward_data(const View<T>& dx, GradMode mode, const View<T>& dy, const T* w, const Shape& ws,
                          const ConvGeom& g, T* col) {
  check_conv_shapes(dy.shape, dx.shape, ws, g, "conv2d_backward_data");
  const int64_t K = ws.n, C = dx.c(), CRR = C * g.kernel * g.kernel, PQ = dy.h() * dy.w();
  for (int64_t n = 0; n < dx.n(); ++n) {
    if (is_pointwise(g)) {
      const T beta = mode == GradMode::Accumulate ? T(1) : T(0);
      gemm(true, false, C, PQ, K, T(1), w, CRR, dy.plane(n, 0), PQ, beta, dx.plane(n, 0), PQ);
      continue;
    }
    gemm(true, false, CRR, PQ, K, T(1), w, CRR, dy.plane(n, 0), PQ, T(0), col, PQ);
    if (mode == GradMode::Overwrite) std::memset(dx.plane(n, 0), 0, sizeof(T) * size_t(C * dx.h() * dx.w()));
    col2im_add(dx.plane(n, 0), col, C, dx.h(), dx.w(), dy.h(), dy.w(), g);
  }
}

template <typename T>
void conv2d_backward_filter(T* dw, GradMode mode, const Shape& ws, const View<T>& dy, const View<T>& x,
                            const ConvGeom& g, T* col) {
  check_conv_shapes(dy.shape, x.shape, ws, g, "conv2d_backward_filter");
  const int64_t K = ws.n, C = x.c(), CRR = C * g.kernel * g.kernel, PQ = dy.h() * dy.w();
  for (int64_t n = 0; n < x.n(); ++n) {
    const T* b = x.plane(n, 0);
    if (!is_pointwise(g)) {
      im2col(col, b, C, x.h(), x.w(), dy.h(), dy.w(), g);
      b = col;
    }
    const T beta = (n == 0 && mode == GradMode::Overwrite) ? T(0) : T(1);
    gemm(false, true, K, CRR, PQ, T(1), dy.plane(n, 0), PQ, b, PQ, beta, dw, CRR);
  }
}

#define CXR_INSTANTIATE(T)                                                                                  \
  template void conv2d_forward<T>(const View<T>&, const View<T>&, const T*, const Shape&, const ConvGeom&, T*); \
  template void conv2d_backward_data<T>(const View<T>&, GradMode, const View<T>&, const T*, const Shape&,   \
                                        const ConvGeom&, T*);                                               \
  template void conv2d_backward_filter<T>(T*, GradMode, const Shape&, const View<T>&, const View<T>&,       \
                                          const ConvGeom&, T*);
CXR_INSTANTIATE(float)
CXR_INSTANTIATE(double)
#undef CXR_INSTANTIATE

}  // namespace cxr::cpu
