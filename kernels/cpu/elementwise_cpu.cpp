// CPU element-wise ops, the dense layer and the weighted-BCE head.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops_cpu.h"

namespace cxr::cpu {

namespace {
// log(sigmoid(z)) without overflow: -log1p(exp(-z)) for z >= 0, z - log1p(exp(z)) otherwise.
double log_sigmoid(double z) { return z >= 0 ? -std::log1p(std::exp(-z)) : z - std::log1p(std::exp(z)); }
}  // namespace

template <typename T>
void relu_forward(const View<T>& y, const View<T>& x) {
  if (y.shape != x.shape) CXR_FAIL("relu_forward: y ", y.shape.str(), " vs x ", x.shape.str());
  const int64_t HW = x.h() * x.w();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < x.n(); ++n)
    for (int64_t c = 0; c < x.c(); ++c) {
      const T* p = x.plane(n, c);
      T* q = y.plane(n, c);
      for (int64_t i = 0; i < HW; ++i) q[i] = std::max(T(0), p[i]);
    }
}

template <typename T>
void relu_backward(const View<T>& dx, const View<T>& dy, const View<T>& y) {
  if (dx.shape != dy.shape || dy.shape != y.shape)
    CXR_FAIL("relu_backward: dx ", dx.shape.str(), ", dy ", dy.shape.str(), ", y ", y.shape.str());
  // Each image's channels are one contiguous run of C*H*W (only the batch stride is free), so the
  // loop runs over long spans in chunks rather than over (n, c) planes, which are as small as 4x4
  // deep in the network. dx may alias dy.
  const int64_t span = y.c() * y.h() * y.w(), chunk = 4096, chunks = (span + chunk - 1) / chunk;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < y.n(); ++n)
    for (int64_t k = 0; k < chunks; ++k) {
      const int64_t i0 = k * chunk, i1 = std::min(span, i0 + chunk);
      const T *g = dy.plane(n, 0), *o = y.plane(n, 0);
      T* d = dx.plane(n, 0);
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) d[i] = o[i] > T(0) ? g[i] : T(0);
    }
}

template <typename T>
void dense_forward(T* y, const T* x, const T* kernel, const T* bias, int64_t n, int64_t in, int64_t out) {
  for (int64_t i = 0; i < n; ++i) std::memcpy(y + i * out, bias, sizeof(T) * size_t(out));
  gemm(false, false, n, out, in, T(1), x, in, kernel, out, T(1), y, out);
}

template <typename T>
void dense_backward(T* dx, T* dkernel, T* dbias, const T* dy, const T* x, const T* kernel, int64_t n,
                    int64_t in, int64_t out) {
  if (dx) gemm(false, true, n, in, out, T(1), dy, out, kernel, out, T(0), dx, in);
  gemm(true, false, in, out, n, T(1), x, in, dy, out, T(0), dkernel, out);
  for (int64_t j = 0; j < out; ++j) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(dy[i * out + j]);
    dbias[j] = T(s);
  }
}

template <typename T>
void sigmoid_forward(T* y, const T* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = T(std::exp(log_sigmoid(double(x[i]))));
}

template <typename T>
void weighted_bce(T* loss, T* dz, const T* z, const T* labels, const T* w_pos, const T* w_neg, int64_t n,
                  int64_t k) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const double zz = double(z[i * k + j]), y = double(labels[i * k + j]);
      const double wp = double(w_pos[j]), wn = double(w_neg[j]);
      total -= wp * y * log_sigmoid(zz) + wn * (1 - y) * log_sigmoid(-zz);  // log(1 - s(z)) = log s(-z)
      const double s = std::exp(log_sigmoid(zz));
      dz[i * k + j] = T((wp * y * (s - 1) + wn * (1 - y) * s) / double(n));
    }
  *loss = T(total / double(n));
}

#define CXR_INSTANTIATE(T)                                                                           \
  template void relu_forward<T>(const View<T>&, const View<T>&);                                    \
  template void relu_backward<T>(const View<T>&, const View<T>&, const View<T>&);                   \
  template void dense_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t);      \
  template void dense_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t); \
  template void sigmoid_forward<T>(T*, const T*, int64_t);                                          \
  template void weighted_bce<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t);
CXR_INSTANTIATE(float)
CXR_INSTANTIATE(double)
#undef CXR_INSTANTIATE

}  // namespace cxr::cpu
