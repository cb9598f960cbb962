// CUDA Adam over the flat parameter buffer: one fused element-wise pass (formula in engine/backend.h),
// the same float operations in the same order as the CPU twin (kernels/cpu/optimizer_cpu.cpp).
#include <cmath>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_util.cuh"

namespace cxr {

namespace {

__global__ void adam_kernel(float* params, float* m, float* v, const float* grads, int64_t count, float b1,
                            float b2, float wd, float eps, float step_size, float inv_sqrt_c2) {
  for (int64_t i = cuda::global_thread(); i < count; i += cuda::grid_threads()) {
    // __fmul_rn/__fadd_rn keep nvcc from contracting into FMAs, so the result matches the CPU's.
    const float g = __fadd_rn(grads[i], __fmul_rn(wd, params[i]));
    const float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(1.0f - b1, g));
    const float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(1.0f - b2, g), g));
    m[i] = mi;
    v[i] = vi;
    params[i] = __fsub_rn(params[i], __fdiv_rn(__fmul_rn(step_size, mi),
                                               __fadd_rn(__fmul_rn(sqrtf(vi), inv_sqrt_c2), eps)));
  }
}

}  // namespace

void CudaBackend::adam_update(float* params, float* m, float* v, const float* grads, int64_t count,
                              const AdamParams& a) {
  CXR_CHECK(a.step >= 1, "Adam step counts from 1, got ", a.step);
  if (count == 0) return;
  const double c1 = 1.0 - std::pow(a.beta1, double(a.step)), c2 = 1.0 - std::pow(a.beta2, double(a.step));
  adam_kernel<<<cuda::blocks_for(count), cuda::kThreads, 0, stream()>>>(
      params, m, v, grads, count, float(a.beta1), float(a.beta2), float(a.weight_decay), float(a.eps),
      float(a.lr / c1), float(1.0 / std::sqrt(c2)));
  CXR_CUDA_CHECK_LAUNCH();
}

}  // namespace cxr
