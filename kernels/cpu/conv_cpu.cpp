// CPU convolution: im2col into the workspace, then one GEMM (OpenBLAS) per group of G images.
// A group's columns sit side by side, so the GEMM is (K, CRR) x (CRR, G*PQ):
//   forward:         Y_g (K, G*PQ)   = W (K, CRR) . col(X_g) (CRR, G*PQ);   Y_n <- its PQ columns
//   backward data:   col (CRR, G*PQ) = W^T . dY_g;  dX_n (+)= col2im(its PQ columns)
//   backward filter: dW (K, CRR)    (+)= sum_g dY_g . col(X_g)^T
// G = ceil(kMinColumns / PQ), at most N: deep in the network a plane is 4x4 to 10x10, and OpenBLAS
// runs a GEMM with 16 columns at half the rate of one with 512 (measured on the 2-core build
// machine: 93 vs 225 GFLOP/s for K 128, CRR 768). Where G is 1 and the convolution is 1x1 stride 1
// unpadded, X_n already is the (C, HW) matrix and no copy is made.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops_cpu.h"

namespace cxr::cpu {

namespace {

constexpr int64_t kMinColumns = 512;

bool is_pointwise(const ConvGeom& g) { return g.kernel == 1 && g.stride == 1 && g.pad == 0; }

// The output columns q whose input column q*stride - pad + s lies inside [0, W): [q0, q1).
inline void valid_columns(int64_t W, int64_t Q, int64_t stride, int64_t off, int64_t* q0, int64_t* q1) {
  // iw = q*stride + off >= 0  <=>  q >= ceil(-off / stride);  iw < W  <=>  q <= floor((W - 1 - off) / stride)
  *q0 = off >= 0 ? 0 : (-off + stride - 1) / stride;
  *q1 = W - 1 - off < 0 ? 0 : std::min(Q, (W - 1 - off) / stride + 1);
  if (*q1 < *q0) *q1 = *q0;
}

// For images j < G starting at n0:
//   col[(c*R + r)*R + s][j*P*Q + p*Q + q] = x_{n0+j}[c][p*stride - pad + r][q*stride - pad + s] (0 outside).
// A 1x1 stride-1 unpadded geometry makes this a plain gather of the planes.
template <typename T>
void im2col(T* col, const View<T>& x, int64_t n0, int64_t G, int64_t P, int64_t Q, const ConvGeom& g) {
  const int64_t R = g.kernel, C = x.c(), H = x.h(), W = x.w(), PQ = P * Q, ld = G * PQ;
#pragma omp parallel for collapse(3) schedule(static)
  for (int64_t c = 0; c < C; ++c)
    for (int64_t rs = 0; rs < R * R; ++rs)
      for (int64_t j = 0; j < G; ++j) {
        const int64_t r = rs / R, s = rs % R, off = s - g.pad;
        int64_t q0, q1;
        valid_columns(W, Q, g.stride, off, &q0, &q1);
        T* dst = col + (c * R * R + rs) * ld + j * PQ;
        const T* src = x.plane(n0 + j, c);
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

// x_{n0+j}[c][ih][iw] (+)= col[...] for every (r, s, p, q) that im2col read from there (its adjoint);
// Overwrite zeroes each plane first.
template <typename T>
void col2im(const View<T>& x, GradMode mode, const T* col, int64_t n0, int64_t G, int64_t P, int64_t Q,
            const ConvGeom& g) {
  const int64_t R = g.kernel, C = x.c(), H = x.h(), W = x.w(), PQ = P * Q, ld = G * PQ;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t j = 0; j < G; ++j)
    for (int64_t c = 0; c < C; ++c) {  // one thread per plane: no write races
      T* dst = x.plane(n0 + j, c);
      if (mode == GradMode::Overwrite) std::memset(dst, 0, sizeof(T) * size_t(H * W));
      for (int64_t rs = 0; rs < R * R; ++rs) {
        const int64_t r = rs / R, s = rs % R, off = s - g.pad;
        int64_t q0, q1;
        valid_columns(W, Q, g.stride, off, &q0, &q1);
        const T* src = col + (c * R * R + rs) * ld + j * PQ;
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
}

// Rows of K planes of G images <-> a (K, G*PQ) matrix.
template <typename T>
void gather_planes(T* m, const View<T>& y, int64_t n0, int64_t G) {
  const int64_t K = y.c(), PQ = y.h() * y.w();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < G; ++j) std::memcpy(m + k * G * PQ + j * PQ, y.plane(n0 + j, k), sizeof(T) * size_t(PQ));
}
template <typename T>
void scatter_planes(const View<T>& y, const T* m, int64_t n0, int64_t G) {
  const int64_t K = y.c(), PQ = y.h() * y.w();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t j = 0; j < G; ++j)
    for (int64_t k = 0; k < K; ++k) std::memcpy(y.plane(n0 + j, k), m + k * G * PQ + j * PQ, sizeof(T) * size_t(PQ));
}

template <typename T>
void scatter_planes_add(const View<T>& y, const T* m, int64_t n0, int64_t G) {
  const int64_t K = y.c(), PQ = y.h() * y.w();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t j = 0; j < G; ++j)
    for (int64_t k = 0; k < K; ++k) {
      T* d = y.plane(n0 + j, k);
      const T* src = m + k * G * PQ + j * PQ;
#pragma omp simd
      for (int64_t i = 0; i < PQ; ++i) d[i] += src[i];
    }
}

// A stride-1 convolution's backward data is itself a stride-1 convolution of dY, with the kernel
// flipped in space, its in/out channels swapped and padding R-1-pad. That form im2cols K*R*R rows of
// dY instead of col2im-adding C*R*R rows, and its GEMM has depth K*R*R instead of K (for a dense
// layer's 3x3: 288 instead of 32).
bool transposed_backward_data(const ConvGeom& g) { return g.stride == 1 && g.kernel > 1 && g.pad <= g.kernel - 1; }

}  // namespace

int64_t conv2d_images_per_gemm(int64_t n, int64_t pq) {
  return std::clamp<int64_t>((kMinColumns + pq - 1) / pq, 1, std::max<int64_t>(n, 1));
}

int64_t conv2d_col_elems(const Shape& y, const Shape& x, const ConvGeom& g) {
  const int64_t PQ = y.h * y.w, G = conv2d_images_per_gemm(x.n, PQ);
  const int64_t RR = g.kernel * g.kernel, cols = G * PQ;
  if (G == 1 && is_pointwise(g)) return 0;
  // forward and backward filter: the columns, then (G > 1) the gathered output rows
  int64_t elems = (x.c * RR + (G > 1 ? y.c : 0)) * cols;
  if (transposed_backward_data(g)) {  // backward data: flipped kernel, columns of dY, (G > 1) dX rows;
    const int64_t xcols = G * x.h * x.w;  // its columns are dX's pixels (more than dY's if unpadded)
    elems = std::max(elems, x.c * y.c * RR + y.c * RR * xcols + (G > 1 ? x.c * xcols : 0));
  }
  return elems;
}

template <typename T>
void conv2d_forward(const View<T>& y, const View<T>& x, const T* w, const Shape& ws, const ConvGeom& g, T* col) {
  check_conv_shapes(y.shape, x.shape, ws, g, "conv2d_forward");
  const int64_t K = ws.n, CRR = x.c() * g.kernel * g.kernel, PQ = y.h() * y.w();
  const int64_t G = conv2d_images_per_gemm(x.n(), PQ);
  for (int64_t n0 = 0; n0 < x.n(); n0 += G) {
    const int64_t Gn = std::min(G, x.n() - n0), cols = Gn * PQ;
    if (G == 1) {
      const T* b = x.plane(n0, 0);
      if (!is_pointwise(g)) {
        im2col(col, x, n0, 1, y.h(), y.w(), g);
        b = col;
      }
      gemm(false, false, K, PQ, CRR, T(1), w, CRR, b, PQ, T(0), y.plane(n0, 0), PQ);
      continue;
    }
    T* out = col + CRR * cols;
    im2col(col, x, n0, Gn, y.h(), y.w(), g);
    gemm(false, false, K, cols, CRR, T(1), w, CRR, col, cols, T(0), out, cols);
    scatter_planes(y, out, n0, Gn);
  }
}

template <typename T>
void conv2d_backward_data(const View<T>& dx, GradMode mode, const View<T>& dy, const T* w, const Shape& ws,
                          const ConvGeom& g, T* col) {
  check_conv_shapes(dy.shape, dx.shape, ws, g, "conv2d_backward_data");
  const int64_t K = ws.n, C = dx.c(), CRR = C * g.kernel * g.kernel, PQ = dy.h() * dy.w();
  const int64_t G = conv2d_images_per_gemm(dx.n(), PQ);
  for (int64_t n0 = 0; n0 < dx.n(); n0 += G) {
    const int64_t Gn = std::min(G, dx.n() - n0), cols = Gn * PQ;
    if (G == 1 && is_pointwise(g)) {
      const T beta = mode == GradMode::Accumulate ? T(1) : T(0);
      gemm(true, false, C, PQ, K, T(1), w, CRR, dy.plane(n0, 0), PQ, beta, dx.plane(n0, 0), PQ);
      continue;
    }
    if (transposed_backward_data(g)) {
      const int64_t RR = g.kernel * g.kernel, HW = dx.h() * dx.w(), xcols = Gn * HW;
      // Workspace: the flipped kernel wt[c][k][r][s] = w[k][c][R-1-r][R-1-s] (made once), the columns
      // of dY, then (G > 1) the rows of dX; offsets fixed by the full group so a short tail group
      // finds wt where the first group left it.
      T* wt = col;
      T* dcol = wt + C * K * RR;
      T* out = dcol + K * RR * G * HW;
      if (n0 == 0)
        for (int64_t k = 0; k < K; ++k)
          for (int64_t c = 0; c < C; ++c)
            for (int64_t rs = 0; rs < RR; ++rs) wt[(c * K + k) * RR + rs] = w[(k * C + c) * RR + (RR - 1 - rs)];
      const ConvGeom gt{g.kernel, 1, g.kernel - 1 - g.pad};
      im2col(dcol, dy, n0, Gn, dx.h(), dx.w(), gt);
      if (G == 1) {
        const T beta = mode == GradMode::Accumulate ? T(1) : T(0);
        gemm(false, false, C, xcols, K * RR, T(1), wt, K * RR, dcol, xcols, beta, dx.plane(n0, 0), xcols);
        continue;
      }
      gemm(false, false, C, xcols, K * RR, T(1), wt, K * RR, dcol, xcols, T(0), out, xcols);
      if (mode == GradMode::Accumulate)
        scatter_planes_add(dx, out, n0, Gn);
      else
        scatter_planes(dx, out, n0, Gn);
      continue;
    }
    const T* b = dy.plane(n0, 0);
    if (G > 1) {
      T* gathered = col + CRR * cols;
      gather_planes(gathered, dy, n0, Gn);
      b = gathered;
    }
    gemm(true, false, CRR, cols, K, T(1), w, CRR, b, cols, T(0), col, cols);
    col2im(dx, mode, col, n0, Gn, dy.h(), dy.w(), g);
  }
}

template <typename T>
void conv2d_backward_filter(T* dw, GradMode mode, const Shape& ws, const View<T>& dy, const View<T>& x,
                            const ConvGeom& g, T* col) {
  check_conv_shapes(dy.shape, x.shape, ws, g, "conv2d_backward_filter");
  const int64_t K = ws.n, CRR = x.c() * g.kernel * g.kernel, PQ = dy.h() * dy.w();
  const int64_t G = conv2d_images_per_gemm(x.n(), PQ);
  for (int64_t n0 = 0; n0 < x.n(); n0 += G) {
    const int64_t Gn = std::min(G, x.n() - n0), cols = Gn * PQ;
    const T beta = (n0 == 0 && mode == GradMode::Overwrite) ? T(0) : T(1);
    const T *a = dy.plane(n0, 0), *b = x.plane(n0, 0);
    if (G > 1 || !is_pointwise(g)) {
      im2col(col, x, n0, Gn, dy.h(), dy.w(), g);
      b = col;
    }
    if (G > 1) {
      T* gathered = col + CRR * cols;
      gather_planes(gathered, dy, n0, Gn);
      a = gathered;
    }
    gemm(false, true, K, CRR, cols, T(1), a, cols, b, cols, beta, dw, CRR);
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
