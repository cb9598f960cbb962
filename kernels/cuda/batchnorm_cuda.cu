// CUDA batch normalisation per channel over (N, H, W) of strided views, matching
// kernels/cpu/batchnorm_cpu.cpp: the reductions run in double with the same two-pass scheme
// (mean, then centred squares), so the float results agree with the oracle to about one rounding.
//
// Layout of the reductions: one block per channel (a grid-stride loop over channels when C exceeds
// the grid), its threads striding over the channel's N*H*W elements, combined by a block sum.
// Simple and deterministic; faster multi-block reductions are issue 7's business.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_util.cuh"

namespace cxr {

namespace {

using cuda::View;

constexpr int kReduceThreads = 512;

unsigned channel_blocks(int64_t channels) {
  return unsigned(std::clamp<int64_t>(channels, 1, cuda::kMaxBlocks));
}

// mean[c], invstd[c] = 1/sqrt(var_biased + eps); running = momentum*running + (1-momentum)*batch,
// the variance folded in being var_biased * var_correction.
__global__ void __launch_bounds__(kReduceThreads)
    bn_stats_kernel(float* mean, float* invstd, float* running_mean, float* running_var, View x, double eps,
                    double momentum, double var_correction) {
  const int64_t per_channel = x.n * x.hw;
  const double count = double(per_channel);
  for (int64_t c = blockIdx.x; c < x.c; c += gridDim.x) {
    double s = 0;
    for (int64_t j = threadIdx.x; j < per_channel; j += blockDim.x) s += x.data[x.channel_offset(c, j)];
    const double m = cuda::block_sum(s) / count;
    double ss = 0;
    for (int64_t j = threadIdx.x; j < per_channel; j += blockDim.x) {
      const double d = double(x.data[x.channel_offset(c, j)]) - m;
      ss += d * d;
    }
    const double var = cuda::block_sum(ss) / count;  // biased: what normalisation uses
    if (threadIdx.x == 0) {
      mean[c] = float(m);
      invstd[c] = float(1.0 / sqrt(var + eps));
      if (running_mean) running_mean[c] = float(momentum * running_mean[c] + (1 - momentum) * m);
      if (running_var)
        running_var[c] = float(momentum * running_var[c] + (1 - momentum) * var * var_correction);
    }
  }
}

__global__ void bn_running_update_kernel(float* running_mean, float* running_var, const float* mean,
                                         const float* invstd, int64_t channels, double eps, double momentum,
                                         double var_correction) {
  for (int64_t c = cuda::global_thread(); c < channels; c += cuda::grid_threads()) {
    const double is = double(invstd[c]), var = fmax(0.0, 1.0 / (is * is) - eps);
    running_mean[c] = float(momentum * double(running_mean[c]) + (1 - momentum) * double(mean[c]));
    running_var[c] = float(momentum * double(running_var[c]) + (1 - momentum) * var * var_correction);
  }
}

__global__ void bn_inference_stats_kernel(float* mean, float* invstd, const float* running_mean,
                                          const float* running_var, int64_t channels, double eps) {
  for (int64_t c = cuda::global_thread(); c < channels; c += cuda::grid_threads()) {
    mean[c] = running_mean[c];
    invstd[c] = float(1.0 / sqrt(double(running_var[c]) + eps));
  }
}

// y = x * scale + shift (then max(0, .)), scale = gamma*invstd, shift = beta - mean*scale. The
// _rn intrinsics keep nvcc from contracting into FMAs, so the arithmetic is the CPU's, operation for
// operation. y may alias x: each element is read, then written, by the same thread.
__global__ void bn_apply_kernel(View y, View x, const float* gamma, const float* beta, const float* mean,
                                const float* invstd, bool relu) {
  const int64_t count = x.count();
  for (int64_t i = cuda::global_thread(); i < count; i += cuda::grid_threads()) {
    const int64_t c = x.channel_of(i);
    const float scale = __fmul_rn(gamma[c], invstd[c]);
    const float shift = __fsub_rn(beta[c], __fmul_rn(mean[c], scale));
    float v = __fadd_rn(__fmul_rn(x.data[x.offset(i)], scale), shift);
    if (relu) v = v > 0.0f ? v : 0.0f;
    y.data[y.offset(i)] = v;
  }
}

// Per channel: dgamma = sum dy*xhat, dbeta = sum dy (both =), then
// dx (=|+=) gamma*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)). The block finishes its channel's
// sums before it writes dx, so dx may alias dy. Relu: dy counts only where bn_apply_kernel's output
// was positive, recomputed from x with its arithmetic (the same _rn operations).
template <bool Relu>
__global__ void __launch_bounds__(kReduceThreads)
    bn_backward_kernel(View dx, bool accumulate, float* dgamma, float* dbeta, View dy, View x,
                       const float* gamma, const float* beta, const float* mean, const float* invstd) {
  const int64_t per_channel = x.n * x.hw;
  const double count = double(per_channel);
  for (int64_t c = blockIdx.x; c < x.c; c += gridDim.x) {
    const double m = mean[c], is = invstd[c];
    float scale = 0.0f, shift = 0.0f;
    if (Relu) {
      scale = __fmul_rn(gamma[c], invstd[c]);
      shift = __fsub_rn(beta[c], __fmul_rn(mean[c], scale));
    }
    double sdy = 0, sdyx = 0;
    for (int64_t j = threadIdx.x; j < per_channel; j += blockDim.x) {
      const float p = x.data[x.channel_offset(c, j)];
      float g = dy.data[dy.channel_offset(c, j)];
      if (Relu && !(__fadd_rn(__fmul_rn(p, scale), shift) > 0.0f)) g = 0.0f;
      sdy += g;
      sdyx += double(g) * (double(p) - m) * is;
    }
    sdy = cuda::block_sum(sdy);
    sdyx = cuda::block_sum(sdyx);
    if (threadIdx.x == 0) {
      dgamma[c] = float(sdyx);
      dbeta[c] = float(sdy);
    }
    const double mdy = sdy / count, mdyx = sdyx / count, k = double(gamma[c]) * is;
    for (int64_t j = threadIdx.x; j < per_channel; j += blockDim.x) {
      const float p = x.data[x.channel_offset(c, j)];
      float g = dy.data[dy.channel_offset(c, j)];
      if (Relu && !(__fadd_rn(__fmul_rn(p, scale), shift) > 0.0f)) g = 0.0f;
      const float v = float(k * (double(g) - mdy - (double(p) - m) * is * mdyx));
      float& d = dx.data[dx.channel_offset(c, j)];
      d = accumulate ? d + v : v;
    }
  }
}

}  // namespace

void CudaBackend::batchnorm_stats(float* mean, float* invstd, float* running_mean, float* running_var,
                                  const Tensor& x, double eps, double momentum, double var_correction) {
  check_device(x, Device::CUDA, "batchnorm_stats x");
  check_plane_contiguous(x, "batchnorm_stats x");
  CXR_CHECK(x.n() * x.h() * x.w() > 0, "batchnorm_stats over an empty batch ", x.shape.str());
  if (x.c() == 0) return;
  bn_stats_kernel<<<channel_blocks(x.c()), kReduceThreads, 0, stream()>>>(
      mean, invstd, running_mean, running_var, cuda::view_of(x), eps, momentum, var_correction);
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::batchnorm_running_update(float* running_mean, float* running_var, const float* mean,
                                           const float* invstd, int64_t channels, double eps, double momentum,
                                           double var_correction) {
  if (channels == 0) return;
  bn_running_update_kernel<<<cuda::blocks_for(channels), cuda::kThreads, 0, stream()>>>(
      running_mean, running_var, mean, invstd, channels, eps, momentum, var_correction);
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::batchnorm_inference_stats(float* mean, float* invstd, const float* running_mean,
                                            const float* running_var, int64_t channels, double eps) {
  if (channels == 0) return;
  bn_inference_stats_kernel<<<cuda::blocks_for(channels), cuda::kThreads, 0, stream()>>>(
      mean, invstd, running_mean, running_var, channels, eps);
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::batchnorm_apply(const Tensor& y, const Tensor& x, const float* gamma, const float* beta,
                                  const float* mean, const float* invstd, bool relu) {
  check_same_shape(y, x, "batchnorm_apply");
  check_device(y, Device::CUDA, "batchnorm_apply y");
  check_device(x, Device::CUDA, "batchnorm_apply x");
  check_plane_contiguous(y, "batchnorm_apply y");
  check_plane_contiguous(x, "batchnorm_apply x");
  if (x.numel() == 0) return;
  bn_apply_kernel<<<cuda::blocks_for(x.numel()), cuda::kThreads, 0, stream()>>>(
      cuda::view_of(y), cuda::view_of(x), gamma, beta, mean, invstd, relu);
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::batchnorm_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta,
                                     const Tensor& dy, const Tensor& x, const float* gamma, const float* mean,
                                     const float* invstd) {
  bn_backward(dx, mode, dgamma, dbeta, dy, x, gamma, nullptr, mean, invstd);
}

void CudaBackend::batchnorm_relu_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta,
                                          const Tensor& dy, const Tensor& x, const float* gamma, const float* beta,
                                          const float* mean, const float* invstd) {
  CXR_CHECK(beta != nullptr, "batchnorm_relu_backward needs beta for the ReLU mask");
  bn_backward(dx, mode, dgamma, dbeta, dy, x, gamma, beta, mean, invstd);
}

void CudaBackend::bn_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta, const Tensor& dy,
                              const Tensor& x, const float* gamma, const float* relu_beta, const float* mean,
                              const float* invstd) {
  check_same_shape(dy, x, "batchnorm_backward (dy vs x)");
  check_same_shape(dx, x, "batchnorm_backward (dx vs x)");
  for (const Tensor* t : {&dx, &dy, &x}) {
    check_device(*t, Device::CUDA, "batchnorm_backward");
    check_plane_contiguous(*t, "batchnorm_backward");
  }
  CXR_CHECK(x.n() * x.h() * x.w() > 0, "batchnorm_backward over an empty batch ", x.shape.str());
  if (x.c() == 0) return;
  if (relu_beta)
    bn_backward_kernel<true><<<channel_blocks(x.c()), kReduceThreads, 0, stream()>>>(
        cuda::view_of(dx), mode == GradMode::Accumulate, dgamma, dbeta, cuda::view_of(dy), cuda::view_of(x),
        gamma, relu_beta, mean, invstd);
  else
    bn_backward_kernel<false><<<channel_blocks(x.c()), kReduceThreads, 0, stream()>>>(
        cuda::view_of(dx), mode == GradMode::Accumulate, dgamma, dbeta, cuda::view_of(dy), cuda::view_of(x),
        gamma, nullptr, mean, invstd);
  CXR_CUDA_CHECK_LAUNCH();
}

}  // namespace cxr
