// The CPU backend: the test oracle and what runs where there is no GPU. Plain loops with double
// accumulation in every reduction; convolutions and dense layers as im2col + OpenBLAS sgemm.
#pragma once
#include <atomic>

#include "engine/backend.h"
#include "kernels/checks.h"

namespace cxr {

class CpuBackend final : public Backend {
 public:
  CpuBackend();
  Device device() const override { return Device::CPU; }
  std::string name() const override;

  void* allocate(size_t bytes) override;
  void release(void* p) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void fill(float* dst, float value, int64_t count) override;
  void synchronize() override {}
  size_t peak_allocated_bytes() const override { return peak_; }
  MeasuredMemory measured_peak() override;
  MemoryBudget default_memory_budget() const override;

  // im2col columns: the strides do not matter.
  size_t conv2d_workspace_bytes(const Shape& y, int64_t y_batch_stride, const Shape& x, int64_t x_batch_stride,
                                const Shape& w, const ConvGeom& g) override;
  void conv2d_forward(const Tensor& y, const Tensor& x, const float* w, const Shape& wshape,
                      const ConvGeom& g, Workspace ws) override;
  void conv2d_backward_data(const Tensor& dx, GradMode mode, const Tensor& dy, const float* w,
                            const Shape& wshape, const ConvGeom& g, Workspace ws) override;
  void conv2d_backward_filter(float* dw, GradMode mode, const Shape& wshape, const Tensor& dy,
                              const Tensor& x, const ConvGeom& g, Workspace ws) override;

  void batchnorm_stats(float* mean, float* invstd, float* running_mean, float* running_var,
                       const Tensor& x, double eps, double momentum, double var_correction) override;
  void batchnorm_running_update(float* running_mean, float* running_var, const float* mean, const float* invstd,
                                int64_t channels, double eps, double momentum, double var_correction) override;
  void batchnorm_inference_stats(float* mean, float* invstd, const float* running_mean,
                                 const float* running_var, int64_t channels, double eps) override;
  void batchnorm_apply(const Tensor& y, const Tensor& x, const float* gamma, const float* beta,
                       const float* mean, const float* invstd, bool relu) override;
  void batchnorm_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta,
                          const Tensor& dy, const Tensor& x, const float* gamma, const float* mean,
                          const float* invstd) override;
  void batchnorm_relu_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta, const Tensor& dy,
                               const Tensor& x, const float* gamma, const float* beta, const float* mean,
                               const float* invstd) override;
  void batchnorm_backward_reduce(float* sum_dy_xhat, float* sum_dy, const Tensor& dy, const Tensor& x,
                                 const float* gamma, const float* beta, const float* mean, const float* invstd,
                                 bool relu) override;
  void batchnorm_backward_apply(const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x, const float* gamma,
                                const float* beta, const float* mean, const float* invstd, const float* sum_dy_xhat,
                                const float* sum_dy, double count, bool relu) override;
  void batchnorm_relu_backward_frozen(const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x,
                                      const float* gamma, const float* beta, const float* mean,
                                      const float* invstd) override;

  void relu_forward(const Tensor& y, const Tensor& x) override;
  void relu_backward(const Tensor& dx, const Tensor& dy, const Tensor& y) override;

  void maxpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) override;
  void maxpool_backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const PoolGeom& g) override;
  void avgpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) override;
  void avgpool_backward(const Tensor& dx, const Tensor& dy, const PoolGeom& g) override;
  void global_avgpool_forward(const Tensor& y, const Tensor& x) override;
  void global_avgpool_backward(const Tensor& dx, const Tensor& dy) override;

  void dense_forward(float* y, const float* x, const float* kernel, const float* bias, int64_t n,
                     int64_t in, int64_t out) override;
  void dense_backward(float* dx, float* dkernel, float* dbias, const float* dy, const float* x,
                      const float* kernel, int64_t n, int64_t in, int64_t out) override;

  void sigmoid_forward(float* y, const float* x, int64_t count) override;
  void weighted_bce(float* loss, float* dz, const float* z, const float* labels, const float* w_pos,
                    const float* w_neg, int64_t n, int64_t k) override;

  void adam_update(float* params, float* m, float* v, const float* grads, int64_t count,
                   const AdamParams& a) override;

 private:
  size_t live_ = 0, peak_ = 0;
};

}  // namespace cxr
