// The CPU kernels as templates over the scalar type: CpuBackend instantiates them for float (the
// oracle and the CPU path); the finite-difference tests instantiate them for double, so gradients
// are checked in double precision against the very same code.
// Semantics of every op: engine/backend.h.
#pragma once
#include "engine/backend.h"
#include "kernels/checks.h"

namespace cxr::cpu {

// A Tensor with a scalar type: planes contiguous, batch stride free (see engine/tensor.h).
template <typename T>
struct View {
  T* data = nullptr;
  Shape shape;
  int64_t batch_stride = 0;
  View() = default;
  View(T* p, Shape s) : data(p), shape(s), batch_stride(s.c * s.h * s.w) {}
  View(T* p, Shape s, int64_t bs) : data(p), shape(s), batch_stride(bs) {}
  int64_t n() const { return shape.n; }
  int64_t c() const { return shape.c; }
  int64_t h() const { return shape.h; }
  int64_t w() const { return shape.w; }
  T* plane(int64_t n, int64_t c) const { return data + n * batch_stride + c * shape.h * shape.w; }
  View channels(int64_t c0, int64_t c1) const {
    Shape s = shape;
    s.c = c1 - c0;
    return View(data + c0 * shape.h * shape.w, s, batch_stride);
  }
};
inline View<float> view(const Tensor& t) { return View<float>(t.data, t.shape, t.batch_stride); }

// Images whose columns one convolution GEMM takes side by side (batch n, output plane of pq pixels).
int64_t conv2d_images_per_gemm(int64_t n, int64_t pq);
// Floats of workspace the convolution needs (im2col columns and gathered rows; 0 for a 1x1 stride-1
// unpadded one that runs image by image).
int64_t conv2d_col_elems(const Shape& y, const Shape& x, const ConvGeom& g);

template <typename T> void conv2d_forward(const View<T>& y, const View<T>& x, const T* w, const Shape& ws, const ConvGeom& g, T* col);
template <typename T> void conv2d_backward_data(const View<T>& dx, GradMode mode, const View<T>& dy, const T* w, const Shape& ws, const ConvGeom& g, T* col);
template <typename T> void conv2d_backward_filter(T* dw, GradMode mode, const Shape& ws, const View<T>& dy, const View<T>& x, const ConvGeom& g, T* col);

template <typename T> void batchnorm_running_update(T* running_mean, T* running_var, const T* mean, const T* invstd, int64_t channels, double eps, double momentum, double var_correction);
template <typename T> void batchnorm_stats(T* mean, T* invstd, T* running_mean, T* running_var, const View<T>& x, double eps, double momentum, double var_correction);
template <typename T> void batchnorm_apply(const View<T>& y, const View<T>& x, const T* gamma, const T* beta, const T* mean, const T* invstd, bool relu);
template <typename T> void batchnorm_backward(const View<T>& dx, GradMode mode, T* dgamma, T* dbeta, const View<T>& dy, const View<T>& x, const T* gamma, const T* mean, const T* invstd);
template <typename T> void batchnorm_relu_backward(const View<T>& dx, GradMode mode, T* dgamma, T* dbeta, const View<T>& dy, const View<T>& x, const T* gamma, const T* beta, const T* mean, const T* invstd);
template <typename T> void batchnorm_backward_reduce(T* sum_dy_xhat, T* sum_dy, const View<T>& dy, const View<T>& x, const T* gamma, const T* beta, const T* mean, const T* invstd, bool relu);
template <typename T> void batchnorm_backward_apply(const View<T>& dx, GradMode mode, const View<T>& dy, const View<T>& x, const T* gamma, const T* beta, const T* mean, const T* invstd, const T* sum_dy_xhat, const T* sum_dy, double count, bool relu);

template <typename T> void batchnorm_relu_backward_frozen(const View<T>& dx, GradMode mode, const View<T>& dy, const View<T>& x, const T* gamma, const T* beta, const T* mean, const T* invstd);

template <typename T> void relu_forward(const View<T>& y, const View<T>& x);
template <typename T> void relu_backward(const View<T>& dx, const View<T>& dy, const View<T>& y);

template <typename T> void maxpool_forward(const View<T>& y, const View<T>& x, const PoolGeom& g);
template <typename T> void maxpool_backward(const View<T>& dx, const View<T>& dy, const View<T>& x, const PoolGeom& g);
template <typename T> void avgpool_forward(const View<T>& y, const View<T>& x, const PoolGeom& g);
template <typename T> void avgpool_backward(const View<T>& dx, const View<T>& dy, const PoolGeom& g);
template <typename T> void global_avgpool_forward(const View<T>& y, const View<T>& x);
template <typename T> void global_avgpool_backward(const View<T>& dx, const View<T>& dy);

template <typename T> void dense_forward(T* y, const T* x, const T* kernel, const T* bias, int64_t n, int64_t in, int64_t out);
template <typename T> void dense_backward(T* dx, T* dkernel, T* dbias, const T* dy, const T* x, const T* kernel, int64_t n, int64_t in, int64_t out);

template <typename T> void sigmoid_forward(T* y, const T* x, int64_t count);
template <typename T> void weighted_bce(T* loss, T* dz, const T* z, const T* labels, const T* w_pos, const T* w_neg, int64_t n, int64_t k);

template <typename T> void adam_update(T* params, T* m, T* v, const T* grads, int64_t count, const AdamParams& a);

}  // namespace cxr::cpu
