// CUDA kernels of the class activation maps' ops (kernels/cam_ops.h), written to reproduce the CPU twins in
// kernels/cpu/cam_ops_cpu.cpp: the same summation order in double (one thread per output sum), the
// same bilinear taps computed in double, the same division for the scaling. The sizes are small
// (N x 1024 x h x w with h, w = S/32), so one thread per output beats block reductions in
// simplicity and costs microseconds; only the per-image maximum uses a block reduction (max is
// exact in any order).
#include <cfloat>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cam_ops.h"

namespace cxr::cuda {

namespace {

cudaStream_t stream_of(Backend& be) {
  auto* cb = dynamic_cast<CudaBackend*>(&be);
  CXR_CHECK(cb != nullptr, "Grad-CAM CUDA kernels need a CudaBackend, got ", be.name());
  return cb->stream();
}

// weights[n, c] (=) mean of plane (n, c); one thread per (n, c), the CPU's order.
__global__ void channel_weights_kernel(float* weights, const float* grads, int64_t n, int64_t c, int64_t hw,
                                       int64_t bstride) {
  const int64_t count = n * c;
  for (int64_t i = global_thread(); i < count; i += grid_threads()) {
    const float* g = grads + (i / c) * bstride + (i % c) * hw;
    double s = 0;
    for (int64_t j = 0; j < hw; ++j) s += double(g[j]);
    weights[i] = float(s / double(hw));
  }
}

// Grad-CAM++'s weights, one thread per (n, c) in the CPU's order: the channel's activation sum, then
// the weight's terms (cam_ops_cpu.cpp's gradcam_plusplus_term, without fused multiply-adds).
__global__ void plusplus_weights_kernel(float* weights, const float* grads, int64_t g_bstride, const float* features,
                                        int64_t f_bstride, int64_t n, int64_t c, int64_t hw) {
  const int64_t count = n * c;
  for (int64_t i = global_thread(); i < count; i += grid_threads()) {
    const float* g = grads + (i / c) * g_bstride + (i % c) * hw;
    const float* a = features + (i / c) * f_bstride + (i % c) * hw;
    double sa = 0;
    for (int64_t j = 0; j < hw; ++j) sa += double(a[j]);
    double w = 0;
    for (int64_t j = 0; j < hw; ++j) {
      const double gj = g[j];
      if (gj == 0) continue;  // the CPU adds 0 here: the same sum
      const double g2 = __dmul_rn(gj, gj), g3 = __dmul_rn(g2, gj);
      const double den = __dadd_rn(__dadd_rn(__dmul_rn(2.0, g2), __dmul_rn(sa, g3)), 1e-6);
      w = __dadd_rn(w, __dmul_rn(gj > 0 ? gj : 0.0, __ddiv_rn(g2, den)));
    }
    weights[i] = float(w);
  }
}

// HiResCAM / LayerCAM: cam[n, j] (=) max(0, sum_c g'[n, c, j] A[n, c, j]); one thread per (n, j), the
// CPU's channel order, no fused multiply-add.
__global__ void elementwise_relu_kernel(float* cam, const float* grads, int64_t g_bstride, const float* features,
                                        int64_t f_bstride, int64_t n, int64_t c, int64_t hw, bool positive) {
  const int64_t count = n * hw;
  for (int64_t i = global_thread(); i < count; i += grid_threads()) {
    const int64_t img = i / hw, j = i % hw;
    const float* g = grads + img * g_bstride + j;
    const float* a = features + img * f_bstride + j;
    double s = 0;
    for (int64_t k = 0; k < c; ++k) {
      double gk = g[k * hw];
      if (positive && !(gk > 0)) gk = 0;
      s = __dadd_rn(s, __dmul_rn(gk, double(a[k * hw])));
    }
    cam[i] = float(s > 0 ? s : 0);
  }
}

// cam[n, j] (=) max(0, sum_c weights[n, c] A[n, c, j]); one thread per (n, j): neighbouring threads
// read neighbouring pixels of the same plane (coalesced); the channel loop is the CPU's order.
__global__ void weighted_sum_relu_kernel(float* cam, const float* weights, const float* features, int64_t n,
                                         int64_t c, int64_t hw, int64_t bstride) {
  const int64_t count = n * hw;
  for (int64_t i = global_thread(); i < count; i += grid_threads()) {
    const int64_t img = i / hw, j = i % hw;
    const float* a = features + img * bstride + j;
    const float* w = weights + img * c;
    double s = 0;
    // __dmul_rn/__dadd_rn: no fused multiply-add, the CPU's rounding step for step.
    for (int64_t k = 0; k < c; ++k) s = __dadd_rn(s, __dmul_rn(double(w[k]), double(a[k * hw])));
    cam[i] = float(s > 0 ? s : 0);
  }
}

// One block per image: the maximum (block reduction), then every pixel divided by it.
__global__ void normalize_kernel(float* cam, int64_t hw) {
  float* m = cam + int64_t(blockIdx.x) * hw;
  __shared__ float partial[32];
  float mx = 0.0f;
  for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) mx = fmaxf(mx, m[j]);
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_down_sync(0xffffffffu, mx, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = mx;
  __syncthreads();
  if (warp == 0) {
    mx = lane < int(blockDim.x >> 5) ? partial[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_down_sync(0xffffffffu, mx, o));
    if (lane == 0) partial[0] = mx;
  }
  __syncthreads();
  mx = partial[0];
  for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) m[j] = mx > 0.0f ? m[j] / mx : 0.0f;
}

// The CPU's tap(): Note [Grad-CAM upsampling convention].
__device__ void tap(int64_t i, int64_t in, int64_t out, int64_t* i0, int64_t* i1, double* t) {
  double s = __dadd_rn(__dmul_rn(double(i) + 0.5, double(in) / double(out)), -0.5);  // no FMA
  if (s < 0) s = 0;
  int64_t a = int64_t(floor(s));
  if (a > in - 1) a = in - 1;
  *i0 = a;
  *i1 = a + 1 < in - 1 ? a + 1 : in - 1;
  *t = s - double(a);
}

__global__ void bilinear_kernel(float* out, int64_t out_h, int64_t out_w, const float* in, int64_t n,
                                int64_t h, int64_t w) {
  const int64_t count = n * out_h * out_w;
  for (int64_t i = global_thread(); i < count; i += grid_threads()) {
    const int64_t x = i % out_w, y = (i / out_w) % out_h, img = i / (out_w * out_h);
    int64_t y0, y1, x0, x1;
    double ty, tx;
    tap(y, h, out_h, &y0, &y1, &ty);
    tap(x, w, out_w, &x0, &x1, &tx);
    const float* r0 = in + img * h * w + y0 * w;
    const float* r1 = in + img * h * w + y1 * w;
    // No fused multiply-add here either.
    const double top = __dadd_rn(__dmul_rn(1 - tx, double(r0[x0])), __dmul_rn(tx, double(r0[x1])));
    const double bot = __dadd_rn(__dmul_rn(1 - tx, double(r1[x0])), __dmul_rn(tx, double(r1[x1])));
    out[i] = float(__dadd_rn(__dmul_rn(1 - ty, top), __dmul_rn(ty, bot)));
  }
}

}  // namespace

void gradcam_channel_weights(Backend& be, float* weights, const Tensor& grads) {
  const int64_t count = grads.n() * grads.c();
  channel_weights_kernel<<<blocks_for(count), kThreads, 0, stream_of(be)>>>(
      weights, grads.data, grads.n(), grads.c(), grads.h() * grads.w(), grads.batch_stride);
  CXR_CUDA_CHECK_LAUNCH();
}

void gradcam_plusplus_weights(Backend& be, float* weights, const Tensor& grads, const Tensor& features) {
  const int64_t count = grads.n() * grads.c();
  plusplus_weights_kernel<<<blocks_for(count), kThreads, 0, stream_of(be)>>>(
      weights, grads.data, grads.batch_stride, features.data, features.batch_stride, grads.n(), grads.c(),
      grads.h() * grads.w());
  CXR_CUDA_CHECK_LAUNCH();
}

void cam_elementwise_relu(Backend& be, float* cam, const Tensor& grads, const Tensor& features, bool positive_grads) {
  const int64_t hw = grads.h() * grads.w(), count = grads.n() * hw;
  elementwise_relu_kernel<<<blocks_for(count), kThreads, 0, stream_of(be)>>>(
      cam, grads.data, grads.batch_stride, features.data, features.batch_stride, grads.n(), grads.c(), hw,
      positive_grads);
  CXR_CUDA_CHECK_LAUNCH();
}

void gradcam_weighted_sum_relu(Backend& be, float* cam, const float* weights, const Tensor& features) {
  const int64_t hw = features.h() * features.w(), count = features.n() * hw;
  weighted_sum_relu_kernel<<<blocks_for(count), kThreads, 0, stream_of(be)>>>(
      cam, weights, features.data, features.n(), features.c(), hw, features.batch_stride);
  CXR_CUDA_CHECK_LAUNCH();
}

void gradcam_normalize(Backend& be, float* cam, int64_t n, int64_t hw) {
  CXR_CHECK(n <= INT32_MAX, "gradcam_normalize: ", n, " maps exceed one grid dimension");
  normalize_kernel<<<unsigned(n), kThreads, 0, stream_of(be)>>>(cam, hw);
  CXR_CUDA_CHECK_LAUNCH();
}

void bilinear_resize(Backend& be, float* out, int64_t out_h, int64_t out_w, const float* in, int64_t n,
                     int64_t h, int64_t w) {
  const int64_t count = n * out_h * out_w;
  bilinear_kernel<<<blocks_for(count), kThreads, 0, stream_of(be)>>>(out, out_h, out_w, in, n, h, w);
  CXR_CUDA_CHECK_LAUNCH();
}

}  // namespace cxr::cuda
