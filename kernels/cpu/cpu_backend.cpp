// CPU backend: host memory, and each op forwarded to the float instantiation of kernels/cpu/*.
#include "kernels/cpu/cpu_backend.h"

#include <cblas.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "kernels/cpu/ops_cpu.h"

namespace cxr {

namespace {
std::mutex g_alloc_mutex;
std::unordered_map<void*, size_t> g_alloc_sizes;  // live blocks of all CPU backends

float* col_buffer(const Workspace& ws, int64_t elems) {
  if (elems == 0) return nullptr;
  CXR_CHECK(ws.bytes >= sizeof(float) * size_t(elems), "convolution workspace of ", ws.bytes,
            " bytes is smaller than the ", sizeof(float) * size_t(elems), " bytes needed");
  return static_cast<float*>(ws.data);
}
}  // namespace

using cpu::view;

CpuBackend::CpuBackend() = default;

std::string CpuBackend::name() const {
  std::ostringstream os;
  os << "cpu (OpenBLAS, " << openblas_get_num_threads() << " threads)";
  return os.str();
}

void* CpuBackend::allocate(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (!p) CXR_FAIL("host allocation of ", bytes, " bytes failed");
  std::lock_guard<std::mutex> lock(g_alloc_mutex);
  g_alloc_sizes[p] = rounded;
  live_ += rounded;
  peak_ = std::max(peak_, live_);
  return p;
}

void CpuBackend::release(void* p) {
  if (!p) return;
  {
    std::lock_guard<std::mutex> lock(g_alloc_mutex);
    auto it = g_alloc_sizes.find(p);
    if (it != g_alloc_sizes.end()) {
      live_ -= it->second;
      g_alloc_sizes.erase(it);
    }
  }
  std::free(p);
}

MeasuredMemory CpuBackend::measured_peak() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return MeasuredMemory{size_t(u.ru_maxrss) * 1024, "process peak RSS"};  // Linux reports KiB
}

MemoryBudget CpuBackend::default_memory_budget() const {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return MemoryBudget{pages > 0 && page > 0 ? size_t(pages) * size_t(page) : 0, "host RAM"};
}

void CpuBackend::copy_to_device(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::fill(float* dst, float value, int64_t count) { std::fill(dst, dst + count, value); }

size_t CpuBackend::conv2d_workspace_bytes(const Shape& y, int64_t, const Shape& x, int64_t, const Shape& w,
                                          const ConvGeom& g) {
  check_conv_shapes(y, x, w, g, "conv2d_workspace_bytes");
  return sizeof(float) * size_t(cpu::conv2d_col_elems(y, x, g));
}
void CpuBackend::conv2d_forward(const Tensor& y, const Tensor& x, const float* w, const Shape& wshape,
                                const ConvGeom& g, Workspace ws) {
  check_conv_shapes(y.shape, x.shape, wshape, g, "conv2d_forward");  // before sizing the workspace
  cpu::conv2d_forward(view(y), view(x), w, wshape, g, col_buffer(ws, cpu::conv2d_col_elems(y.shape, x.shape, g)));
}
void CpuBackend::conv2d_backward_data(const Tensor& dx, GradMode mode, const Tensor& dy, const float* w,
                                      const Shape& wshape, const ConvGeom& g, Workspace ws) {
  check_conv_shapes(dy.shape, dx.shape, wshape, g, "conv2d_backward_data");
  cpu::conv2d_backward_data(view(dx), mode, view(dy), w, wshape, g,
                            col_buffer(ws, cpu::conv2d_col_elems(dy.shape, dx.shape, g)));
}
void CpuBackend::conv2d_backward_filter(float* dw, GradMode mode, const Shape& wshape, const Tensor& dy,
                                        const Tensor& x, const ConvGeom& g, Workspace ws) {
  check_conv_shapes(dy.shape, x.shape, wshape, g, "conv2d_backward_filter");
  cpu::conv2d_backward_filter(dw, mode, wshape, view(dy), view(x), g,
                              col_buffer(ws, cpu::conv2d_col_elems(dy.shape, x.shape, g)));
}

void CpuBackend::batchnorm_stats(float* mean, float* invstd, float* running_mean, float* running_var,
                                 const Tensor& x, double eps, double momentum, double var_correction) {
  cpu::batchnorm_stats(mean, invstd, running_mean, running_var, view(x), eps, momentum, var_correction);
}
void CpuBackend::batchnorm_running_update(float* running_mean, float* running_var, const float* mean,
                                          const float* invstd, int64_t channels, double eps, double momentum,
                                          double var_correction) {
  cpu::batchnorm_running_update(running_mean, running_var, mean, invstd, channels, eps, momentum, var_correction);
}
void CpuBackend::batchnorm_inference_stats(float* mean, float* invstd, const float* running_mean,
                                           const float* running_var, int64_t channels, double eps) {
  for (int64_t c = 0; c < channels; ++c) {
    mean[c] = running_mean[c];
    invstd[c] = float(1.0 / std::sqrt(double(running_var[c]) + eps));
  }
}
void CpuBackend::batchnorm_apply(const Tensor& y, const Tensor& x, const float* gamma, const float* beta,
                                 const float* mean, const float* invstd, bool relu) {
  cpu::batchnorm_apply(view(y), view(x), gamma, beta, mean, invstd, relu);
}
void CpuBackend::batchnorm_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta,
                                    const Tensor& dy, const Tensor& x, const float* gamma, const float* mean,
                                    const float* invstd) {
  cpu::batchnorm_backward(view(dx), mode, dgamma, dbeta, view(dy), view(x), gamma, mean, invstd);
}
void CpuBackend::batchnorm_relu_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta,
                                         const Tensor& dy, const Tensor& x, const float* gamma, const float* beta,
                                         const float* mean, const float* invstd) {
  cpu::batchnorm_relu_backward(view(dx), mode, dgamma, dbeta, view(dy), view(x), gamma, beta, mean, invstd);
}
void CpuBackend::batchnorm_backward_reduce(float* sum_dy_xhat, float* sum_dy, const Tensor& dy, const Tensor& x,
                                           const float* gamma, const float* beta, const float* mean,
                                           const float* invstd, bool relu) {
  CXR_CHECK(!relu || beta != nullptr, "batchnorm_backward_reduce needs beta for the ReLU mask");
  cpu::batchnorm_backward_reduce(sum_dy_xhat, sum_dy, view(dy), view(x), gamma, beta, mean, invstd, relu);
}
void CpuBackend::batchnorm_backward_apply(const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x,
                                          const float* gamma, const float* beta, const float* mean,
                                          const float* invstd, const float* sum_dy_xhat, const float* sum_dy,
                                          double count, bool relu) {
  CXR_CHECK(!relu || beta != nullptr, "batchnorm_backward_apply needs beta for the ReLU mask");
  cpu::batchnorm_backward_apply(view(dx), mode, view(dy), view(x), gamma, beta, mean, invstd, sum_dy_xhat, sum_dy,
                                count, relu);
}

void CpuBackend::batchnorm_relu_backward_frozen(const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x,
                                                const float* gamma, const float* beta, const float* mean,
                                                const float* invstd) {
  cpu::batchnorm_relu_backward_frozen(view(dx), mode, view(dy), view(x), gamma, beta, mean, invstd);
}

void CpuBackend::relu_forward(const Tensor& y, const Tensor& x) { cpu::relu_forward(view(y), view(x)); }
void CpuBackend::relu_backward(const Tensor& dx, const Tensor& dy, const Tensor& y) {
  cpu::relu_backward(view(dx), view(dy), view(y));
}

void CpuBackend::maxpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) {
  cpu::maxpool_forward(view(y), view(x), g);
}
void CpuBackend::maxpool_backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const PoolGeom& g) {
  cpu::maxpool_backward(view(dx), view(dy), view(x), g);
}
void CpuBackend::avgpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) {
  cpu::avgpool_forward(view(y), view(x), g);
}
void CpuBackend::avgpool_backward(const Tensor& dx, const Tensor& dy, const PoolGeom& g) {
  cpu::avgpool_backward(view(dx), view(dy), g);
}
void CpuBackend::global_avgpool_forward(const Tensor& y, const Tensor& x) {
  cpu::global_avgpool_forward(view(y), view(x));
}
void CpuBackend::global_avgpool_backward(const Tensor& dx, const Tensor& dy) {
  cpu::global_avgpool_backward(view(dx), view(dy));
}

void CpuBackend::dense_forward(float* y, const float* x, const float* kernel, const float* bias, int64_t n,
                               int64_t in, int64_t out) {
  cpu::dense_forward(y, x, kernel, bias, n, in, out);
}
void CpuBackend::dense_backward(float* dx, float* dkernel, float* dbias, const float* dy, const float* x,
                                const float* kernel, int64_t n, int64_t in, int64_t out) {
  cpu::dense_backward(dx, dkernel, dbias, dy, x, kernel, n, in, out);
}
void CpuBackend::sigmoid_forward(float* y, const float* x, int64_t count) { cpu::sigmoid_forward(y, x, count); }
void CpuBackend::weighted_bce(float* loss, float* dz, const float* z, const float* labels, const float* w_pos,
                              const float* w_neg, int64_t n, int64_t k) {
  cpu::weighted_bce(loss, dz, z, labels, w_pos, w_neg, n, k);
}

void CpuBackend::adam_update(float* params, float* m, float* v, const float* grads, int64_t count,
                             const AdamParams& a) {
  cpu::adam_update(params, m, v, grads, count, a);
}

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace cxr
