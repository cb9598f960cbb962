// CUDA pooling on strided views, written to reproduce kernels/cpu/pool_cpu.cpp exactly:
//   - max pooling picks the FIRST maximum in row-major window order (strict >), padded positions
//     never take part, so ties resolve as on the CPU;
//   - backward passes are gathers (one thread per input element, summing over the windows that
//     cover it in the CPU's (p, q) order), so they need no atomics and add in the same order;
//   - average pooling never pads and, like the CPU, floors odd sizes (uncovered inputs get 0).
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_util.cuh"

namespace cxr {

namespace {

using cuda::View;

struct PoolDims {
  int64_t H, W, P, Q, kernel, stride, pad;
};

PoolDims pool_dims(const Tensor& x, const Tensor& y, const PoolGeom& g) {
  return PoolDims{x.h(), x.w(), y.h(), y.w(), g.kernel, g.stride, g.pad};
}

// Index in the (H, W) plane of the first maximum of window (p, q); -1 if the window is empty.
// The CPU's window_argmax, line for line.
__device__ int64_t window_argmax(const float* plane, const PoolDims& d, int64_t p, int64_t q) {
  float best = 0.0f;
  int64_t arg = -1;
  for (int64_t r = 0; r < d.kernel; ++r) {
    const int64_t ih = p * d.stride - d.pad + r;
    if (ih < 0 || ih >= d.H) continue;
    for (int64_t s = 0; s < d.kernel; ++s) {
      const int64_t iw = q * d.stride - d.pad + s;
      if (iw < 0 || iw >= d.W) continue;
      const float v = plane[ih * d.W + iw];
      if (arg < 0 || v > best) best = v, arg = ih * d.W + iw;
    }
  }
  return arg;
}

// Output rows [lo, hi] whose windows cover input row i (the same formula serves columns).
__device__ void covering(int64_t i, int64_t kernel, int64_t stride, int64_t pad, int64_t outs, int64_t* lo,
                         int64_t* hi) {
  const int64_t first = i + pad - kernel + 1;  // window start must be >= this
  *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t last = (i + pad) / stride;
  *hi = last < outs - 1 ? last : outs - 1;
}

// Plane index (n, c) and in-plane index of element i of a (N, C, plane) iteration.
struct PlaneIndex {
  int64_t n, c, k;
};
__device__ PlaneIndex split(int64_t i, int64_t C, int64_t plane) {
  const int64_t nc = i / plane;
  return PlaneIndex{nc / C, nc % C, i % plane};
}

__global__ void maxpool_forward_kernel(View y, View x, PoolDims d) {
  const int64_t PQ = d.P * d.Q, count = y.n * y.c * PQ;
  for (int64_t i = cuda::global_thread(); i < count; i += cuda::grid_threads()) {
    const PlaneIndex t = split(i, y.c, PQ);
    const float* in = x.plane(t.n, t.c);
    y.plane(t.n, t.c)[t.k] = in[window_argmax(in, d, t.k / d.Q, t.k % d.Q)];
  }
}

// dx (=): each input element sums dy over the windows whose first maximum it is.
__global__ void maxpool_backward_kernel(View dx, View dy, View x, PoolDims d) {
  const int64_t HW = d.H * d.W, count = x.n * x.c * HW;
  for (int64_t i = cuda::global_thread(); i < count; i += cuda::grid_threads()) {
    const PlaneIndex t = split(i, x.c, HW);
    const int64_t ih = t.k / d.W, iw = t.k % d.W;
    const float* in = x.plane(t.n, t.c);
    const float* gy = dy.plane(t.n, t.c);
    int64_t p0, p1, q0, q1;
    covering(ih, d.kernel, d.stride, d.pad, d.P, &p0, &p1);
    covering(iw, d.kernel, d.stride, d.pad, d.Q, &q0, &q1);
    float acc = 0.0f;
    for (int64_t p = p0; p <= p1; ++p)
      for (int64_t q = q0; q <= q1; ++q)
        if (window_argmax(in, d, p, q) == t.k) acc += gy[p * d.Q + q];
    dx.plane(t.n, t.c)[t.k] = acc;
  }
}

__global__ void avgpool_forward_kernel(View y, View x, PoolDims d, float inv) {
  const int64_t PQ = d.P * d.Q, count = y.n * y.c * PQ;
  for (int64_t i = cuda::global_thread(); i < count; i += cuda::grid_threads()) {
    const PlaneIndex t = split(i, y.c, PQ);
    const int64_t p = t.k / d.Q, q = t.k % d.Q;
    const float* in = x.plane(t.n, t.c);
    float s = 0.0f;
    for (int64_t r = 0; r < d.kernel; ++r)
      for (int64_t u = 0; u < d.kernel; ++u) s += in[(p * d.stride + r) * d.W + q * d.stride + u];
    y.plane(t.n, t.c)[t.k] = s * inv;
  }
}

// dx (=) sum over covering windows of dy * inv, in the CPU's order and without FMA contraction.
__global__ void avgpool_backward_kernel(View dx, View dy, PoolDims d, float inv) {
  const int64_t HW = d.H * d.W, count = dx.n * dx.c * HW;
  for (int64_t i = cuda::global_thread(); i < count; i += cuda::grid_threads()) {
    const PlaneIndex t = split(i, dx.c, HW);
    const float* gy = dy.plane(t.n, t.c);
    int64_t p0, p1, q0, q1;
    covering(t.k / d.W, d.kernel, d.stride, 0, d.P, &p0, &p1);
    covering(t.k % d.W, d.kernel, d.stride, 0, d.Q, &q0, &q1);
    float acc = 0.0f;
    for (int64_t p = p0; p <= p1; ++p)
      for (int64_t q = q0; q <= q1; ++q) acc = __fadd_rn(acc, __fmul_rn(gy[p * d.Q + q], inv));
    dx.plane(t.n, t.c)[t.k] = acc;
  }
}

// One warp per (n, c) plane: the mean in double, as the CPU.
__global__ void global_avgpool_forward_kernel(View y, View x) {
  const int64_t planes = x.n * x.c, warps = cuda::grid_threads() / 32;
  const int lane = threadIdx.x & 31;
  for (int64_t nc = cuda::global_thread() / 32; nc < planes; nc += warps) {
    const int64_t n = nc / x.c, c = nc % x.c;
    const float* in = x.plane(n, c);
    double s = 0;
    for (int64_t i = lane; i < x.hw; i += 32) s += in[i];
    s = cuda::warp_sum(s);
    if (lane == 0) *y.plane(n, c) = float(s / double(x.hw));
  }
}

__global__ void global_avgpool_backward_kernel(View dx, View dy) {
  const int64_t count = dx.count();
  const float hw = float(dx.hw);
  for (int64_t i = cuda::global_thread(); i < count; i += cuda::grid_threads()) {
    const int64_t nc = i / dx.hw;
    dx.data[dx.offset(i)] = *dy.plane(nc / dx.c, nc % dx.c) / hw;
  }
}

void check_pool_views(const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
  check_device(a, Device::CUDA, a_name);
  check_device(b, Device::CUDA, b_name);
  check_plane_contiguous(a, a_name);
  check_plane_contiguous(b, b_name);
}

}  // namespace

void CudaBackend::maxpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) {
  check_pool_shapes(y.shape, x.shape, g, "maxpool_forward");
  CXR_CHECK(g.pad < g.kernel, "maxpool_forward: pad ", g.pad, " >= window ", g.kernel,
            " leaves windows with no input");
  check_pool_views(y, "maxpool_forward y", x, "maxpool_forward x");
  if (y.numel() == 0) return;
  maxpool_forward_kernel<<<cuda::blocks_for(y.numel()), cuda::kThreads, 0, stream()>>>(
      cuda::view_of(y), cuda::view_of(x), pool_dims(x, y, g));
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::maxpool_backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const PoolGeom& g) {
  check_pool_shapes(dy.shape, x.shape, g, "maxpool_backward");
  CXR_CHECK(g.pad < g.kernel, "maxpool_backward: pad ", g.pad, " >= window ", g.kernel,
            " leaves windows with no input");
  check_same_shape(dx, x, "maxpool_backward (dx vs x)");
  check_pool_views(dx, "maxpool_backward dx", dy, "maxpool_backward dy");
  check_pool_views(x, "maxpool_backward x", x, "maxpool_backward x");
  if (x.numel() == 0) return;
  maxpool_backward_kernel<<<cuda::blocks_for(x.numel()), cuda::kThreads, 0, stream()>>>(
      cuda::view_of(dx), cuda::view_of(dy), cuda::view_of(x), pool_dims(x, dy, g));
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::avgpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) {
  check_pool_shapes(y.shape, x.shape, g, "avgpool_forward");
  CXR_CHECK(g.pad == 0, "average pooling supports no padding");
  check_pool_views(y, "avgpool_forward y", x, "avgpool_forward x");
  if (y.numel() == 0) return;
  avgpool_forward_kernel<<<cuda::blocks_for(y.numel()), cuda::kThreads, 0, stream()>>>(
      cuda::view_of(y), cuda::view_of(x), pool_dims(x, y, g), 1.0f / float(g.kernel * g.kernel));
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::avgpool_backward(const Tensor& dx, const Tensor& dy, const PoolGeom& g) {
  check_pool_shapes(dy.shape, dx.shape, g, "avgpool_backward");
  CXR_CHECK(g.pad == 0, "average pooling supports no padding");
  check_pool_views(dx, "avgpool_backward dx", dy, "avgpool_backward dy");
  if (dx.numel() == 0) return;
  avgpool_backward_kernel<<<cuda::blocks_for(dx.numel()), cuda::kThreads, 0, stream()>>>(
      cuda::view_of(dx), cuda::view_of(dy), pool_dims(dx, dy, g), 1.0f / float(g.kernel * g.kernel));
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::global_avgpool_forward(const Tensor& y, const Tensor& x) {
  check_shape(y, Shape{x.n(), x.c(), 1, 1}, "global_avgpool_forward output");
  check_pool_views(y, "global_avgpool_forward y", x, "global_avgpool_forward x");
  if (y.numel() == 0) return;
  CXR_CHECK(x.h() * x.w() > 0, "global_avgpool_forward of empty planes ", x.shape.str());
  global_avgpool_forward_kernel<<<cuda::blocks_for(32 * y.numel()), cuda::kThreads, 0, stream()>>>(
      cuda::view_of(y), cuda::view_of(x));
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::global_avgpool_backward(const Tensor& dx, const Tensor& dy) {
  check_shape(dy, Shape{dx.n(), dx.c(), 1, 1}, "global_avgpool_backward dy");
  check_pool_views(dx, "global_avgpool_backward dx", dy, "global_avgpool_backward dy");
  if (dx.numel() == 0) return;
  global_avgpool_backward_kernel<<<cuda::blocks_for(dx.numel()), cuda::kThreads, 0, stream()>>>(
      cuda::view_of(dx), cuda::view_of(dy));
  CXR_CUDA_CHECK_LAUNCH();
}

}  // namespace cxr
