// CPU twins of the Grad-CAM ops (kernels/cam_ops.h), templates over float/double with double
// accumulation, and the Backend dispatch that sends CUDA buffers to kernels/cuda/cam_ops_cuda.cu.
#include <algorithm>
#include <cmath>

#include "kernels/checks.h"
#include "kernels/cam_ops.h"

namespace cxr {

namespace cpu {

namespace {
// One pixel's share of Grad-CAM++'s weight (kernels/cam_ops.h); the CUDA twin spells the same
// operations with _rn intrinsics.
double gradcam_plusplus_term(double g, double sum_a) {
  if (g == 0) return 0;
  const double g2 = g * g, g3 = g2 * g;
  const double a = g2 / (2 * g2 + sum_a * g3 + 1e-6);
  return (g > 0 ? g : 0) * a;
}
}  // namespace

// alpha[n, c] = (1 / hw) sum_ij grads[n, c, i, j]
template <typename T>
void gradcam_channel_weights(T* weights, const T* grads, int64_t n, int64_t c, int64_t hw, int64_t bstride) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k) {
      const T* g = grads + i * bstride + k * hw;
      double s = 0;
      for (int64_t j = 0; j < hw; ++j) s += double(g[j]);
      weights[i * c + k] = T(s / double(hw));
    }
}

// Grad-CAM++: a_ij = g^2 / (2 g^2 + S g^3 + eps) (0 where g == 0), w = sum_ij relu(g) a_ij, with
// S = sum_ij A_ij; the channel's sums in double, in index order.
template <typename T>
void gradcam_plusplus_weights(T* weights, const T* grads, int64_t g_bstride, const T* features, int64_t f_bstride,
                              int64_t n, int64_t c, int64_t hw) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k) {
      const T* g = grads + i * g_bstride + k * hw;
      const T* a = features + i * f_bstride + k * hw;
      double sa = 0;
      for (int64_t j = 0; j < hw; ++j) sa += double(a[j]);
      double w = 0;
      for (int64_t j = 0; j < hw; ++j) w += gradcam_plusplus_term(double(g[j]), sa);
      weights[i * c + k] = T(w);
    }
}

// cam[n, ij] = max(0, sum_c g'[n, c, ij] A[n, c, ij]), g' = g or max(g, 0); channels summed in double.
template <typename T>
void cam_elementwise_relu(T* cam, const T* grads, int64_t g_bstride, const T* features, int64_t f_bstride,
                          int64_t n, int64_t c, int64_t hw, bool positive_grads) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < hw; ++j) {
      const T* g = grads + i * g_bstride + j;
      const T* a = features + i * f_bstride + j;
      double s = 0;
      for (int64_t k = 0; k < c; ++k) {
        double gk = double(g[k * hw]);
        if (positive_grads && !(gk > 0)) gk = 0;
        s += gk * double(a[k * hw]);
      }
      cam[i * hw + j] = T(s > 0 ? s : 0);
    }
}

// cam[n, ij] = max(0, sum_c alpha[n, c] A[n, c, ij])
template <typename T>
void gradcam_weighted_sum_relu(T* cam, const T* weights, const T* features, int64_t n, int64_t c, int64_t hw,
                               int64_t bstride) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < hw; ++j) {
      const T* a = features + i * bstride + j;
      double s = 0;
      for (int64_t k = 0; k < c; ++k) s += double(weights[i * c + k]) * double(a[k * hw]);
      cam[i * hw + j] = T(s > 0 ? s : 0);
    }
}

template <typename T>
void gradcam_normalize(T* cam, int64_t n, int64_t hw) {
  for (int64_t i = 0; i < n; ++i) {
    T* m = cam + i * hw;
    T mx = 0;
    for (int64_t j = 0; j < hw; ++j) mx = std::max(mx, m[j]);
    for (int64_t j = 0; j < hw; ++j) m[j] = mx > T(0) ? m[j] / mx : T(0);
  }
}

namespace {
// Source index pair and weight of output coordinate i (Note [Grad-CAM upsampling convention]).
struct Tap {
  int64_t i0, i1;
  double t;
};
Tap tap(int64_t i, int64_t in, int64_t out) {
  double s = (double(i) + 0.5) * (double(in) / double(out)) - 0.5;
  if (s < 0) s = 0;
  int64_t i0 = int64_t(std::floor(s));
  if (i0 > in - 1) i0 = in - 1;
  const int64_t i1 = std::min(i0 + 1, in - 1);
  return Tap{i0, i1, s - double(i0)};
}
}  // namespace

template <typename T>
void bilinear_resize(T* out, int64_t out_h, int64_t out_w, const T* in, int64_t n, int64_t h, int64_t w) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < out_h; ++y) {
      const Tap ty = tap(y, h, out_h);
      const T* r0 = in + i * h * w + ty.i0 * w;
      const T* r1 = in + i * h * w + ty.i1 * w;
      T* o = out + (i * out_h + y) * out_w;
      for (int64_t x = 0; x < out_w; ++x) {
        const Tap tx = tap(x, w, out_w);
        const double top = (1 - tx.t) * double(r0[tx.i0]) + tx.t * double(r0[tx.i1]);
        const double bot = (1 - tx.t) * double(r1[tx.i0]) + tx.t * double(r1[tx.i1]);
        o[x] = T((1 - ty.t) * top + ty.t * bot);
      }
    }
}

#define CXR_INSTANTIATE_GRADCAM(T)                                                                        \
  template void gradcam_plusplus_weights<T>(T*, const T*, int64_t, const T*, int64_t, int64_t, int64_t, int64_t); \
  template void cam_elementwise_relu<T>(T*, const T*, int64_t, const T*, int64_t, int64_t, int64_t, int64_t, bool); \
  template void gradcam_channel_weights<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t);             \
  template void gradcam_weighted_sum_relu<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t); \
  template void gradcam_normalize<T>(T*, int64_t, int64_t);                                               \
  template void bilinear_resize<T>(T*, int64_t, int64_t, const T*, int64_t, int64_t, int64_t);
CXR_INSTANTIATE_GRADCAM(float)
CXR_INSTANTIATE_GRADCAM(double)
#undef CXR_INSTANTIATE_GRADCAM

}  // namespace cpu

// ---- dispatch ---------------------------------------------------------------------------------

// A CUDA backend runs the CUDA twin (kernels/cuda/cam_ops_cuda.cu); a build without CUDA never
// references it (it is not linked there) and refuses such a backend.
#ifdef CXR_HAVE_CUDA
#define CXR_GRADCAM_ON_CUDA(be, op, call) \
  if ((be).device() == Device::CUDA) return call
#else
#define CXR_GRADCAM_ON_CUDA(be, op, call) \
  if ((be).device() == Device::CUDA) CXR_FAIL(op, ": a CUDA backend in a build without CUDA")
#endif

void gradcam_channel_weights(Backend& be, float* weights, const Tensor& grads) {
  check_device(grads, be.device(), "gradcam_channel_weights: grads");
  check_plane_contiguous(grads, "gradcam_channel_weights: grads");
  if (grads.numel() == 0) return;
  CXR_GRADCAM_ON_CUDA(be, "gradcam_channel_weights", cuda::gradcam_channel_weights(be, weights, grads));
  cpu::gradcam_channel_weights(weights, grads.data, grads.n(), grads.c(), grads.h() * grads.w(),
                               grads.batch_stride);
}

void gradcam_plusplus_weights(Backend& be, float* weights, const Tensor& grads, const Tensor& features) {
  check_device(grads, be.device(), "gradcam_plusplus_weights: grads");
  check_device(features, be.device(), "gradcam_plusplus_weights: features");
  check_plane_contiguous(grads, "gradcam_plusplus_weights: grads");
  check_plane_contiguous(features, "gradcam_plusplus_weights: features");
  check_same_shape(grads, features, "gradcam_plusplus_weights");
  if (grads.numel() == 0) return;
  CXR_GRADCAM_ON_CUDA(be, "gradcam_plusplus_weights", cuda::gradcam_plusplus_weights(be, weights, grads, features));
  cpu::gradcam_plusplus_weights(weights, grads.data, grads.batch_stride, features.data, features.batch_stride,
                                grads.n(), grads.c(), grads.h() * grads.w());
}

void cam_elementwise_relu(Backend& be, float* cam, const Tensor& grads, const Tensor& features, bool positive_grads) {
  check_device(grads, be.device(), "cam_elementwise_relu: grads");
  check_device(features, be.device(), "cam_elementwise_relu: features");
  check_plane_contiguous(grads, "cam_elementwise_relu: grads");
  check_plane_contiguous(features, "cam_elementwise_relu: features");
  check_same_shape(grads, features, "cam_elementwise_relu");
  if (grads.numel() == 0) return;
  CXR_GRADCAM_ON_CUDA(be, "cam_elementwise_relu",
                      cuda::cam_elementwise_relu(be, cam, grads, features, positive_grads));
  cpu::cam_elementwise_relu(cam, grads.data, grads.batch_stride, features.data, features.batch_stride, grads.n(),
                            grads.c(), grads.h() * grads.w(), positive_grads);
}

void gradcam_weighted_sum_relu(Backend& be, float* cam, const float* weights, const Tensor& features) {
  check_device(features, be.device(), "gradcam_weighted_sum_relu: features");
  check_plane_contiguous(features, "gradcam_weighted_sum_relu: features");
  if (features.numel() == 0) return;
  CXR_GRADCAM_ON_CUDA(be, "gradcam_weighted_sum_relu", cuda::gradcam_weighted_sum_relu(be, cam, weights, features));
  cpu::gradcam_weighted_sum_relu(cam, weights, features.data, features.n(), features.c(),
                                 features.h() * features.w(), features.batch_stride);
}

void gradcam_normalize(Backend& be, float* cam, int64_t n, int64_t hw) {
  CXR_CHECK(n >= 0 && hw >= 0, "gradcam_normalize: bad sizes n=", n, " hw=", hw);
  if (n * hw == 0) return;
  CXR_GRADCAM_ON_CUDA(be, "gradcam_normalize", cuda::gradcam_normalize(be, cam, n, hw));
  cpu::gradcam_normalize(cam, n, hw);
}

void bilinear_resize(Backend& be, float* out, int64_t out_h, int64_t out_w, const float* in, int64_t n,
                     int64_t h, int64_t w) {
  CXR_CHECK(n >= 0 && h >= 1 && w >= 1 && out_h >= 1 && out_w >= 1, "bilinear_resize: bad sizes (", n, ", ",
            h, ", ", w, ") -> (", out_h, ", ", out_w, ")");
  if (n == 0) return;
  CXR_GRADCAM_ON_CUDA(be, "bilinear_resize", cuda::bilinear_resize(be, out, out_h, out_w, in, n, h, w));
  cpu::bilinear_resize(out, out_h, out_w, in, n, h, w);
}

}  // namespace cxr
