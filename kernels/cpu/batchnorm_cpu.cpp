// CPU batch normalisation over (N, H, W) per channel; every reduction accumulates in double.
// `omp simd reduction` lets the compiler keep one double partial sum per vector lane (a different
// summation order, still in double); without it each sum is one serial chain of dependent adds,
// which made these loops latency-bound (15% of a CPU training step at batch 8 / 128x128).
#include <algorithm>
#include <cmath>

#include "kernels/cpu/ops_cpu.h"

namespace cxr::cpu {

template <typename T>
void batchnorm_stats(T* mean, T* invstd, T* running_mean, T* running_var, const View<T>& x, double eps,
                     double momentum, double var_correction) {
  const int64_t N = x.n(), C = x.c(), HW = x.h() * x.w();
  const double count = double(N * HW);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    double s = 0;  // two passes: mean, then centred squares
    for (int64_t n = 0; n < N; ++n) {
      const T* p = x.plane(n, c);
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < HW; ++i) s += double(p[i]);
    }
    const double m = s / count;
    double ss = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T* p = x.plane(n, c);
#pragma omp simd reduction(+ : ss)
      for (int64_t i = 0; i < HW; ++i) ss += (double(p[i]) - m) * (double(p[i]) - m);
    }
    const double var = ss / count;  // biased: what normalisation uses
    mean[c] = T(m);
    invstd[c] = T(1.0 / std::sqrt(var + eps));
    if (running_mean) running_mean[c] = T(momentum * double(running_mean[c]) + (1 - momentum) * m);
    if (running_var)
      running_var[c] = T(momentum * double(running_var[c]) + (1 - momentum) * var * var_correction);
  }
}

template <typename T>
void batchnorm_running_update(T* running_mean, T* running_var, const T* mean, const T* invstd, int64_t channels,
                              double eps, double momentum, double var_correction) {
  for (int64_t c = 0; c < channels; ++c) {
    const double is = double(invstd[c]), var = std::max(0.0, 1.0 / (is * is) - eps);
    running_mean[c] = T(momentum * double(running_mean[c]) + (1 - momentum) * double(mean[c]));
    running_var[c] = T(momentum * double(running_var[c]) + (1 - momentum) * var * var_correction);
  }
}

template <typename T>
void batchnorm_apply(const View<T>& y, const View<T>& x, const T* gamma, const T* beta, const T* mean,
                     const T* invstd, bool relu) {
  if (y.shape != x.shape) CXR_FAIL("batchnorm_apply: y ", y.shape.str(), " vs x ", x.shape.str());
  const int64_t N = x.n(), C = x.c(), HW = x.h() * x.w();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const T scale = gamma[c] * invstd[c], shift = beta[c] - mean[c] * scale;
      const T* p = x.plane(n, c);
      T* q = y.plane(n, c);
      if (relu)
        for (int64_t i = 0; i < HW; ++i) q[i] = std::max(T(0), p[i] * scale + shift);
      else
        for (int64_t i = 0; i < HW; ++i) q[i] = p[i] * scale + shift;
    }
}

// The backward of batchnorm_apply, per channel in two halves: the sums, then dx from them. The
// fused backward runs both; the synchronised one runs them as two ops (batchnorm_backward_reduce,
// then batchnorm_backward_apply with sums over the whole batch). With Relu (fused ReLU), dy is the
// gradient w.r.t. the ReLU output and counts only where the apply's output was positive, recomputed
// from x with the apply's float arithmetic (so the mask is the forward's exactly): one pass over the
// tensor fewer than relu_backward followed by the plain backward.
namespace {

// The apply's scale and shift of channel c, for the ReLU mask (unused without Relu).
template <typename T, bool Relu>
struct BnMask {
  T scale = T(0), shift = T(0);
  BnMask(const T* gamma, const T* beta, const T* mean, const T* invstd, int64_t c) {
    if constexpr (Relu) scale = gamma[c] * invstd[c], shift = beta[c] - mean[c] * scale;
  }
  T operator()(T g, T p) const {
    if constexpr (Relu) return p * scale + shift > T(0) ? g : T(0);
    return g;
  }
};

// sdy = sum dy', sdyx = sum dy' * xhat over channel c's N*H*W elements, in double.
template <typename T, bool Relu>
void bn_channel_sums(double& sdy_out, double& sdyx_out, const View<T>& dy, const View<T>& x, int64_t c,
                     const BnMask<T, Relu>& mask, const T* mean, const T* invstd) {
  const int64_t N = x.n(), HW = x.h() * x.w();
  const double m = double(mean[c]), is = double(invstd[c]);
  double sdy = 0, sdyx = 0;
  for (int64_t n = 0; n < N; ++n) {
    const T *g = dy.plane(n, c), *p = x.plane(n, c);
#pragma omp simd reduction(+ : sdy, sdyx)
    for (int64_t i = 0; i < HW; ++i) {
      const T gi = mask(g[i], p[i]);
      sdy += double(gi);
      sdyx += double(gi) * (double(p[i]) - m) * is;
    }
  }
  sdy_out = sdy;
  sdyx_out = sdyx;
}

// dx (=|+=) gamma * invstd * (dy' - sdy / count - xhat * sdyx / count) over channel c.
template <typename T, bool Relu>
void bn_channel_dx(const View<T>& dx, bool acc, const View<T>& dy, const View<T>& x, int64_t c,
                   const BnMask<T, Relu>& mask, const T* gamma, const T* mean, const T* invstd, double sdy,
                   double sdyx, double count) {
  const int64_t N = x.n(), HW = x.h() * x.w();
  const double m = double(mean[c]), is = double(invstd[c]);
  const double mdy = sdy / count, mdyx = sdyx / count, k = double(gamma[c]) * is;
  for (int64_t n = 0; n < N; ++n) {
    const T *g = dy.plane(n, c), *p = x.plane(n, c);
    T* d = dx.plane(n, c);
#pragma omp simd
    for (int64_t i = 0; i < HW; ++i) {
      const T gi = mask(g[i], p[i]);
      const T v = T(k * (double(gi) - mdy - (double(p[i]) - m) * is * mdyx));
      d[i] = acc ? d[i] + v : v;
    }
  }
}

template <typename T, bool Relu>
void batchnorm_backward_impl(const View<T>& dx, GradMode mode, T* dgamma, T* dbeta, const View<T>& dy,
                             const View<T>& x, const T* gamma, const T* beta, const T* mean, const T* invstd) {
  if (dy.shape != x.shape || dx.shape != x.shape)
    CXR_FAIL("batchnorm_backward: dx ", dx.shape.str(), ", dy ", dy.shape.str(), ", x ", x.shape.str());
  const int64_t C = x.c();
  const double count = double(x.n() * x.h() * x.w());
  const bool acc = mode == GradMode::Accumulate;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const BnMask<T, Relu> mask(gamma, beta, mean, invstd, c);
    double sdy = 0, sdyx = 0;
    bn_channel_sums<T, Relu>(sdy, sdyx, dy, x, c, mask, mean, invstd);
    dgamma[c] = T(sdyx);
    dbeta[c] = T(sdy);
    bn_channel_dx<T, Relu>(dx, acc, dy, x, c, mask, gamma, mean, invstd, sdy, sdyx, count);
  }
}

template <typename T, bool Relu>
void batchnorm_backward_reduce_impl(T* sum_dy_xhat, T* sum_dy, const View<T>& dy, const View<T>& x, const T* gamma,
                                    const T* beta, const T* mean, const T* invstd) {
  if (dy.shape != x.shape) CXR_FAIL("batchnorm_backward_reduce: dy ", dy.shape.str(), ", x ", x.shape.str());
  const int64_t C = x.c();
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    double sdy = 0, sdyx = 0;
    bn_channel_sums<T, Relu>(sdy, sdyx, dy, x, c, BnMask<T, Relu>(gamma, beta, mean, invstd, c), mean, invstd);
    sum_dy_xhat[c] = T(sdyx);
    sum_dy[c] = T(sdy);
  }
}

template <typename T, bool Relu>
void batchnorm_backward_apply_impl(const View<T>& dx, GradMode mode, const View<T>& dy, const View<T>& x,
                                   const T* gamma, const T* beta, const T* mean, const T* invstd,
                                   const T* sum_dy_xhat, const T* sum_dy, double count) {
  if (dy.shape != x.shape || dx.shape != x.shape)
    CXR_FAIL("batchnorm_backward_apply: dx ", dx.shape.str(), ", dy ", dy.shape.str(), ", x ", x.shape.str());
  if (!(count > 0)) CXR_FAIL("batchnorm_backward_apply: count ", count, " (the global batch's values per channel)");
  const int64_t C = x.c();
  const bool acc = mode == GradMode::Accumulate;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c)
    bn_channel_dx<T, Relu>(dx, acc, dy, x, c, BnMask<T, Relu>(gamma, beta, mean, invstd, c), gamma, mean, invstd,
                           double(sum_dy[c]), double(sum_dy_xhat[c]), count);
}

}  // namespace

template <typename T>
void batchnorm_backward(const View<T>& dx, GradMode mode, T* dgamma, T* dbeta, const View<T>& dy,
                        const View<T>& x, const T* gamma, const T* mean, const T* invstd) {
  batchnorm_backward_impl<T, false>(dx, mode, dgamma, dbeta, dy, x, gamma, nullptr, mean, invstd);
}

template <typename T>
void batchnorm_relu_backward(const View<T>& dx, GradMode mode, T* dgamma, T* dbeta, const View<T>& dy,
                             const View<T>& x, const T* gamma, const T* beta, const T* mean, const T* invstd) {
  batchnorm_backward_impl<T, true>(dx, mode, dgamma, dbeta, dy, x, gamma, beta, mean, invstd);
}

template <typename T>
void batchnorm_backward_reduce(T* sum_dy_xhat, T* sum_dy, const View<T>& dy, const View<T>& x, const T* gamma,
                               const T* beta, const T* mean, const T* invstd, bool relu) {
  if (relu)
    batchnorm_backward_reduce_impl<T, true>(sum_dy_xhat, sum_dy, dy, x, gamma, beta, mean, invstd);
  else
    batchnorm_backward_reduce_impl<T, false>(sum_dy_xhat, sum_dy, dy, x, gamma, beta, mean, invstd);
}

template <typename T>
void batchnorm_backward_apply(const View<T>& dx, GradMode mode, const View<T>& dy, const View<T>& x, const T* gamma,
                              const T* beta, const T* mean, const T* invstd, const T* sum_dy_xhat, const T* sum_dy,
                              double count, bool relu) {
  if (relu)
    batchnorm_backward_apply_impl<T, true>(dx, mode, dy, x, gamma, beta, mean, invstd, sum_dy_xhat, sum_dy, count);
  else
    batchnorm_backward_apply_impl<T, false>(dx, mode, dy, x, gamma, beta, mean, invstd, sum_dy_xhat, sum_dy, count);
}

// Frozen statistics: each output element depends on its own input alone (the statistics are
// constants), so the backward is the apply's slope where its ReLU let the value through.
template <typename T>
void batchnorm_relu_backward_frozen(const View<T>& dx, GradMode mode, const View<T>& dy, const View<T>& x,
                                    const T* gamma, const T* beta, const T* mean, const T* invstd) {
  if (dy.shape != x.shape || dx.shape != x.shape)
    CXR_FAIL("batchnorm_relu_backward_frozen: dx ", dx.shape.str(), ", dy ", dy.shape.str(), ", x ", x.shape.str());
  const int64_t N = x.n(), C = x.c(), HW = x.h() * x.w();
  const bool acc = mode == GradMode::Accumulate;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const T scale = gamma[c] * invstd[c], shift = beta[c] - mean[c] * scale;  // the apply's arithmetic
      const T *g = dy.plane(n, c), *p = x.plane(n, c);
      T* d = dx.plane(n, c);
      for (int64_t i = 0; i < HW; ++i) {
        const T v = p[i] * scale + shift > T(0) ? g[i] * scale : T(0);
        d[i] = acc ? d[i] + v : v;
      }
    }
}

#define CXR_INSTANTIATE(T)                                                                                   \
  template void batchnorm_stats<T>(T*, T*, T*, T*, const View<T>&, double, double, double);                \
  template void batchnorm_running_update<T>(T*, T*, const T*, const T*, int64_t, double, double, double);    \
  template void batchnorm_apply<T>(const View<T>&, const View<T>&, const T*, const T*, const T*, const T*, bool); \
  template void batchnorm_backward<T>(const View<T>&, GradMode, T*, T*, const View<T>&, const View<T>&,     \
                                      const T*, const T*, const T*);                                        \
  template void batchnorm_relu_backward<T>(const View<T>&, GradMode, T*, T*, const View<T>&, const View<T>&, \
                                           const T*, const T*, const T*, const T*);      \
  template void batchnorm_backward_reduce<T>(T*, T*, const View<T>&, const View<T>&, const T*, const T*,        \
                                             const T*, const T*, bool);                                       \
  template void batchnorm_backward_apply<T>(const View<T>&, GradMode, const View<T>&, const View<T>&, const T*, \
                                            const T*, const T*, const T*, const T*, const T*, double, bool);  \
  template void batchnorm_relu_backward_frozen<T>(const View<T>&, GradMode, const View<T>&, const View<T>&,  \
                                                  const T*, const T*, const T*, const T*);
CXR_INSTANTIATE(float)
CXR_INSTANTIATE(double)
#undef CXR_INSTANTIATE

}  // namespace cxr::cpu
