// CUDA batch normalisation per channel over (N, H, W) of strided views, matching
// kernels/cpu/batchnorm_cpu.cpp: the reductions run in double with the same two-pass scheme
// (mean, then centred squares), so the float results agree with the oracle to about one rounding.
//
// Layout of the reductions: one block per channel (a grid-stride loop over channels when C exceeds
// the grid), its threads striding over the channel's N*H*W elements, combined by a block sum; the
// statistics of few channels spread each channel over several blocks (Note [BN statistics over
// many blocks]). Deterministic: every sum adds the same terms in a fixed order on every run.
//
// Note [BN statistics over many blocks]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A dense layer's BN computes statistics for its 32 new channels only (Note [BN statistics once per
// channel] in layers/batchnorm.h): one block per channel would keep 32 of an H100's 132
// multiprocessors busy. bn_stat_splits (kernels/bn_launch.h) cuts each channel's elements into
// `splits` chunks, one block each, to reach 4 blocks per multiprocessor: pass 1 writes each chunk's
// sum, pass 2 each chunk's sum of squares centred on the channel's mean (every block re-adds pass 1's
// partials in order to get it), and a finishing kernel adds the partials in order and writes what
// the single-block kernel writes. The two passes keep the CPU's two-pass scheme; only the order of
// the double additions changes (about 1e-16 relative), so the float results still agree with the
// oracle to one rounding.
#include "kernels/bn_launch.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_util.cuh"

namespace cxr {

namespace {

using cuda::ViewT;

constexpr int kReduceThreads = 512;
constexpr int64_t kMinChunk = 4 * kReduceThreads;  // elements per block of a split channel

unsigned channel_blocks(int64_t channels) {
  return unsigned(std::clamp<int64_t>(channels, 1, cuda::kMaxBlocks));
}

// What every statistics kernel writes for channel c, from its mean and biased variance.
__device__ void write_stats(int64_t c, double m, double var, float* mean, float* invstd, float* running_mean,
                            float* running_var, double eps, double momentum, double var_correction) {
  mean[c] = float(m);
  invstd[c] = float(1.0 / sqrt(var + eps));
  if (running_mean) running_mean[c] = float(momentum * running_mean[c] + (1 - momentum) * m);
  if (running_var) running_var[c] = float(momentum * running_var[c] + (1 - momentum) * var * var_correction);
}

// mean[c], invstd[c] = 1/sqrt(var_biased + eps); running = momentum*running + (1-momentum)*batch,
// the variance folded in being var_biased * var_correction. One block per channel.
template <typename Index>
__global__ void __launch_bounds__(kReduceThreads)
    bn_stats_kernel(float* mean, float* invstd, float* running_mean, float* running_var, ViewT<Index> x,
                    double eps, double momentum, double var_correction) {
  const Index per_channel = x.n * x.hw;
  const double count = double(per_channel);
  for (Index c = blockIdx.x; c < x.c; c += gridDim.x) {
    double s = 0;
    for (Index j = threadIdx.x; j < per_channel; j += blockDim.x) s += x.data[x.channel_offset(c, j)];
    const double m = cuda::block_sum(s) / count;
    double ss = 0;
    for (Index j = threadIdx.x; j < per_channel; j += blockDim.x) {
      const double d = double(x.data[x.channel_offset(c, j)]) - m;
      ss += d * d;
    }
    const double var = cuda::block_sum(ss) / count;  // biased: what normalisation uses
    if (threadIdx.x == 0) write_stats(c, m, var, mean, invstd, running_mean, running_var, eps, momentum, var_correction);
  }
}

// Sum of a channel's `splits` partials, in order.
__device__ double partial_total(const double* partials, int splits) {
  double t = 0;
  for (int s = 0; s < splits; ++s) t += partials[s];
  return t;
}

// Block (chunk, c) of a split channel: pass 1 (centred == false) writes the chunk's sum; pass 2 its
// sum of squares about the channel's mean, from pass 1's partials.
template <typename Index, bool Centred>
__global__ void __launch_bounds__(kReduceThreads)
    bn_partial_kernel(double* out, const double* sums, ViewT<Index> x, Index chunk, int splits) {
  const Index c = blockIdx.y, per_channel = x.n * x.hw;
  const Index begin = Index(blockIdx.x) * chunk, end = min(per_channel, begin + chunk);
  const double m = Centred ? partial_total(sums + c * splits, splits) / double(per_channel) : 0.0;
  double acc = 0;
  for (Index j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const double v = double(x.data[x.channel_offset(c, j)]) - m;
    acc += Centred ? v * v : v;
  }
  acc = cuda::block_sum(acc);
  if (threadIdx.x == 0) out[c * splits + blockIdx.x] = acc;
}

__global__ void bn_finish_stats_kernel(float* mean, float* invstd, float* running_mean, float* running_var,
                                       const double* sums, const double* squares, int64_t channels, int splits,
                                       double count, double eps, double momentum, double var_correction) {
  for (int64_t c = cuda::global_thread(); c < channels; c += cuda::grid_threads()) {
    const double m = partial_total(sums + c * splits, splits) / count;
    const double var = partial_total(squares + c * splits, splits) / count;
    write_stats(c, m, var, mean, invstd, running_mean, running_var, eps, momentum, var_correction);
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
template <typename Index>
__global__ void bn_apply_kernel(ViewT<Index> y, ViewT<Index> x, const float* gamma, const float* beta,
                                const float* mean, const float* invstd, bool relu) {
  const Index count = x.count();
  for (Index i = cuda::global_thread<Index>(); i < count; i += cuda::grid_threads<Index>()) {
    const Index c = x.channel_of(i);
    const float scale = __fmul_rn(gamma[c], invstd[c]);
    const float shift = __fsub_rn(beta[c], __fmul_rn(mean[c], scale));
    float v = __fadd_rn(__fmul_rn(x.data[x.offset(i)], scale), shift);
    if (relu) v = v > 0.0f ? v : 0.0f;
    y.data[y.offset(i)] = v;
  }
}

// The backward in two halves per channel, shared by the fused kernel and the synchronised pair
// (batchnorm_backward_reduce / _apply), as kernels/cpu/batchnorm_cpu.cpp shares them. Relu: dy
// counts only where bn_apply_kernel's output was positive, recomputed from x with its arithmetic
// (the same _rn operations); BnMask holds the apply's scale and shift of one channel.
template <bool Relu>
struct BnMask {
  float scale = 0.0f, shift = 0.0f;
  __device__ BnMask(const float* gamma, const float* beta, const float* mean, const float* invstd, int64_t c) {
    if (Relu) {
      scale = __fmul_rn(gamma[c], invstd[c]);
      shift = __fsub_rn(beta[c], __fmul_rn(mean[c], scale));
    }
  }
  __device__ float operator()(float g, float p) const {
    return Relu && !(__fadd_rn(__fmul_rn(p, scale), shift) > 0.0f) ? 0.0f : g;
  }
};

// sdy = sum dy', sdyx = sum dy' * xhat over channel c, in double, by the whole block (every thread
// must call it: it synchronises); the totals are returned to every thread.
template <bool Relu, typename Index>
__device__ void bn_block_sums(double& sdy_out, double& sdyx_out, ViewT<Index> dy, ViewT<Index> x, Index c,
                              const BnMask<Relu>& mask, double m, double is) {
  const Index per_channel = x.n * x.hw;
  double sdy = 0, sdyx = 0;
  for (Index j = threadIdx.x; j < per_channel; j += blockDim.x) {
    const float p = x.data[x.channel_offset(c, j)];
    const float g = mask(dy.data[dy.channel_offset(c, j)], p);
    sdy += g;
    sdyx += double(g) * (double(p) - m) * is;
  }
  sdy_out = cuda::block_sum(sdy);
  sdyx_out = cuda::block_sum(sdyx);
}

// One element's dx: k * (dy' - mean(dy') - xhat * mean(dy' * xhat)), k = gamma * invstd.
__device__ float bn_dx(float g, float p, double m, double is, double k, double mdy, double mdyx) {
  return float(k * (double(g) - mdy - (double(p) - m) * is * mdyx));
}

// Per channel: dgamma = sum dy*xhat, dbeta = sum dy (both =), then
// dx (=|+=) gamma*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)). The block finishes its channel's
// sums before it writes dx, so dx may alias dy.
template <bool Relu, typename Index>
__global__ void __launch_bounds__(kReduceThreads)
    bn_backward_kernel(ViewT<Index> dx, bool accumulate, float* dgamma, float* dbeta, ViewT<Index> dy,
                       ViewT<Index> x, const float* gamma, const float* beta, const float* mean,
                       const float* invstd) {
  const Index per_channel = x.n * x.hw;
  const double count = double(per_channel);
  for (Index c = blockIdx.x; c < x.c; c += gridDim.x) {
    const double m = mean[c], is = invstd[c];
    const BnMask<Relu> mask(gamma, beta, mean, invstd, c);
    double sdy, sdyx;
    bn_block_sums<Relu>(sdy, sdyx, dy, x, c, mask, m, is);
    if (threadIdx.x == 0) {
      dgamma[c] = float(sdyx);
      dbeta[c] = float(sdy);
    }
    const double mdy = sdy / count, mdyx = sdyx / count, k = double(gamma[c]) * is;
    for (Index j = threadIdx.x; j < per_channel; j += blockDim.x) {
      const float p = x.data[x.channel_offset(c, j)];
      const float g = mask(dy.data[dy.channel_offset(c, j)], p);
      const float v = bn_dx(g, p, m, is, k, mdy, mdyx);
      float& d = dx.data[dx.channel_offset(c, j)];
      d = accumulate ? d + v : v;
    }
  }
}

// The synchronised backward's first half: sum_dy_xhat[c] = sum dy'*xhat, sum_dy[c] = sum dy' (=),
// one block per channel as in bn_backward_kernel.
template <bool Relu, typename Index>
__global__ void __launch_bounds__(kReduceThreads)
    bn_backward_reduce_kernel(float* sum_dy_xhat, float* sum_dy, ViewT<Index> dy, ViewT<Index> x, const float* gamma,
                              const float* beta, const float* mean, const float* invstd) {
  for (Index c = blockIdx.x; c < x.c; c += gridDim.x) {
    double sdy, sdyx;
    bn_block_sums<Relu>(sdy, sdyx, dy, x, c, BnMask<Relu>(gamma, beta, mean, invstd, c), double(mean[c]),
                        double(invstd[c]));
    if (threadIdx.x == 0) {
      sum_dy_xhat[c] = float(sdyx);
      sum_dy[c] = float(sdy);
    }
  }
}

// The second half, element-wise (one thread per element, so a few channels still fill the GPU):
// dx (=|+=) gamma*invstd*(dy' - sum_dy/count - xhat*sum_dy_xhat/count), the sums over the global
// batch. dx may alias dy: each element is read, then written, by the same thread.
template <bool Relu, typename Index>
__global__ void bn_backward_apply_kernel(ViewT<Index> dx, bool accumulate, ViewT<Index> dy, ViewT<Index> x,
                                         const float* gamma, const float* beta, const float* mean,
                                         const float* invstd, const float* sum_dy_xhat, const float* sum_dy,
                                         double count) {
  const Index total = x.count();
  for (Index i = cuda::global_thread<Index>(); i < total; i += cuda::grid_threads<Index>()) {
    const Index c = x.channel_of(i);
    const double m = mean[c], is = invstd[c];
    const double mdy = double(sum_dy[c]) / count, mdyx = double(sum_dy_xhat[c]) / count, k = double(gamma[c]) * is;
    const float p = x.data[x.offset(i)];
    const float g = BnMask<Relu>(gamma, beta, mean, invstd, c)(dy.data[dy.offset(i)], p);
    const float v = bn_dx(g, p, m, is, k, mdy, mdyx);
    float* d = dx.data + dx.offset(i);
    *d = accumulate ? *d + v : v;
  }
}

// Frozen statistics (kernels/cpu/batchnorm_cpu.cpp's twin): dx (=|+=) dy * scale where
// bn_apply_kernel's output was positive (its _rn arithmetic), else 0. One thread per element; dx may
// alias dy (each element is read, then written, by the same thread).
template <typename Index>
__global__ void bn_relu_backward_frozen_kernel(ViewT<Index> dx, bool accumulate, ViewT<Index> dy, ViewT<Index> x,
                                               const float* gamma, const float* beta, const float* mean,
                                               const float* invstd) {
  const Index count = x.count();
  for (Index i = cuda::global_thread<Index>(); i < count; i += cuda::grid_threads<Index>()) {
    const Index c = x.channel_of(i);
    const float scale = __fmul_rn(gamma[c], invstd[c]);
    const float shift = __fsub_rn(beta[c], __fmul_rn(mean[c], scale));
    const bool open = __fadd_rn(__fmul_rn(x.data[x.offset(i)], scale), shift) > 0.0f;
    const float v = open ? __fmul_rn(dy.data[dy.offset(i)], scale) : 0.0f;
    float* d = dx.data + dx.offset(i);
    *d = accumulate ? __fadd_rn(*d, v) : v;
  }
}

}  // namespace

void CudaBackend::batchnorm_stats(float* mean, float* invstd, float* running_mean, float* running_var,
                                  const Tensor& x, double eps, double momentum, double var_correction) {
  check_device(x, Device::CUDA, "batchnorm_stats x");
  check_plane_contiguous(x, "batchnorm_stats x");
  CXR_CHECK(x.n() * x.h() * x.w() > 0, "batchnorm_stats over an empty batch ", x.shape.str());
  if (x.c() == 0) return;
  const int64_t per_channel = x.n() * x.h() * x.w();
  // Note [BN statistics over many blocks]: 4 blocks per multiprocessor.
  const int64_t splits = bn_stat_splits(x.c(), per_channel, 4 * int64_t(multiprocessors_), kMinChunk,
                                        int64_t(bn_partial_capacity_));
  cuda::with_index_type({&x}, [&](auto tag) {
    using Index = decltype(tag);
    const ViewT<Index> xv = cuda::view_of<Index>(x);
    if (splits == 1) {
      bn_stats_kernel<<<channel_blocks(x.c()), kReduceThreads, 0, stream()>>>(mean, invstd, running_mean, running_var,
                                                                             xv, eps, momentum, var_correction);
      CXR_CUDA_CHECK_LAUNCH();
      return;
    }
    double* sums = bn_partials_.get();
    double* squares = sums + x.c() * splits;
    const Index chunk = Index((per_channel + splits - 1) / splits);
    const dim3 grid(unsigned(splits), unsigned(x.c()));
    bn_partial_kernel<Index, false><<<grid, kReduceThreads, 0, stream()>>>(sums, nullptr, xv, chunk, int(splits));
    CXR_CUDA_CHECK_LAUNCH();
    bn_partial_kernel<Index, true><<<grid, kReduceThreads, 0, stream()>>>(squares, sums, xv, chunk, int(splits));
    CXR_CUDA_CHECK_LAUNCH();
    bn_finish_stats_kernel<<<cuda::blocks_for(x.c()), cuda::kThreads, 0, stream()>>>(
        mean, invstd, running_mean, running_var, sums, squares, x.c(), int(splits), double(per_channel), eps,
        momentum, var_correction);
    CXR_CUDA_CHECK_LAUNCH();
  });
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
  cuda::with_index_type({&y, &x}, [&](auto tag) {
    using Index = decltype(tag);
    bn_apply_kernel<<<cuda::blocks_for(x.numel()), cuda::kThreads, 0, stream()>>>(
        cuda::view_of<Index>(y), cuda::view_of<Index>(x), gamma, beta, mean, invstd, relu);
  });
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

void CudaBackend::batchnorm_relu_backward_frozen(const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x,
                                                 const float* gamma, const float* beta, const float* mean,
                                                 const float* invstd) {
  check_same_shape(dy, x, "batchnorm_relu_backward_frozen (dy vs x)");
  check_same_shape(dx, x, "batchnorm_relu_backward_frozen (dx vs x)");
  for (const Tensor* t : {&dx, &dy, &x}) {
    check_device(*t, Device::CUDA, "batchnorm_relu_backward_frozen");
    check_plane_contiguous(*t, "batchnorm_relu_backward_frozen");
  }
  if (x.numel() == 0) return;
  const bool accumulate = mode == GradMode::Accumulate;
  cuda::with_index_type({&dx, &dy, &x}, [&](auto tag) {
    using Index = decltype(tag);
    bn_relu_backward_frozen_kernel<<<cuda::blocks_for(x.numel()), cuda::kThreads, 0, stream()>>>(
        cuda::view_of<Index>(dx), accumulate, cuda::view_of<Index>(dy), cuda::view_of<Index>(x), gamma, beta, mean,
        invstd);
  });
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::batchnorm_backward_reduce(float* sum_dy_xhat, float* sum_dy, const Tensor& dy, const Tensor& x,
                                            const float* gamma, const float* beta, const float* mean,
                                            const float* invstd, bool relu) {
  check_same_shape(dy, x, "batchnorm_backward_reduce (dy vs x)");
  for (const Tensor* t : {&dy, &x}) {
    check_device(*t, Device::CUDA, "batchnorm_backward_reduce");
    check_plane_contiguous(*t, "batchnorm_backward_reduce");
  }
  CXR_CHECK(!relu || beta != nullptr, "batchnorm_backward_reduce needs beta for the ReLU mask");
  if (x.c() == 0) return;  // an empty share (N*H*W = 0) still writes its zero sums
  cuda::with_index_type({&dy, &x}, [&](auto tag) {
    using Index = decltype(tag);
    const ViewT<Index> dyv = cuda::view_of<Index>(dy), xv = cuda::view_of<Index>(x);
    if (relu)
      bn_backward_reduce_kernel<true, Index><<<channel_blocks(x.c()), kReduceThreads, 0, stream()>>>(
          sum_dy_xhat, sum_dy, dyv, xv, gamma, beta, mean, invstd);
    else
      bn_backward_reduce_kernel<false, Index><<<channel_blocks(x.c()), kReduceThreads, 0, stream()>>>(
          sum_dy_xhat, sum_dy, dyv, xv, gamma, nullptr, mean, invstd);
  });
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::batchnorm_backward_apply(const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x,
                                           const float* gamma, const float* beta, const float* mean,
                                           const float* invstd, const float* sum_dy_xhat, const float* sum_dy,
                                           double count, bool relu) {
  check_same_shape(dy, x, "batchnorm_backward_apply (dy vs x)");
  check_same_shape(dx, x, "batchnorm_backward_apply (dx vs x)");
  for (const Tensor* t : {&dx, &dy, &x}) {
    check_device(*t, Device::CUDA, "batchnorm_backward_apply");
    check_plane_contiguous(*t, "batchnorm_backward_apply");
  }
  CXR_CHECK(!relu || beta != nullptr, "batchnorm_backward_apply needs beta for the ReLU mask");
  CXR_CHECK(count > 0, "batchnorm_backward_apply: count ", count, " (the global batch's values per channel)");
  if (x.numel() == 0) return;
  const bool accumulate = mode == GradMode::Accumulate;
  cuda::with_index_type({&dx, &dy, &x}, [&](auto tag) {
    using Index = decltype(tag);
    const ViewT<Index> dxv = cuda::view_of<Index>(dx), dyv = cuda::view_of<Index>(dy), xv = cuda::view_of<Index>(x);
    if (relu)
      bn_backward_apply_kernel<true, Index><<<cuda::blocks_for(x.numel()), cuda::kThreads, 0, stream()>>>(
          dxv, accumulate, dyv, xv, gamma, beta, mean, invstd, sum_dy_xhat, sum_dy, count);
    else
      bn_backward_apply_kernel<false, Index><<<cuda::blocks_for(x.numel()), cuda::kThreads, 0, stream()>>>(
          dxv, accumulate, dyv, xv, gamma, nullptr, mean, invstd, sum_dy_xhat, sum_dy, count);
  });
  CXR_CUDA_CHECK_LAUNCH();
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
  const bool accumulate = mode == GradMode::Accumulate;
  cuda::with_index_type({&dx, &dy, &x}, [&](auto tag) {
    using Index = decltype(tag);
    const ViewT<Index> dxv = cuda::view_of<Index>(dx), dyv = cuda::view_of<Index>(dy), xv = cuda::view_of<Index>(x);
    if (relu_beta)
      bn_backward_kernel<true, Index><<<channel_blocks(x.c()), kReduceThreads, 0, stream()>>>(
          dxv, accumulate, dgamma, dbeta, dyv, xv, gamma, relu_beta, mean, invstd);
    else
      bn_backward_kernel<false, Index><<<channel_blocks(x.c()), kReduceThreads, 0, stream()>>>(
          dxv, accumulate, dgamma, dbeta, dyv, xv, gamma, nullptr, mean, invstd);
  });
  CXR_CUDA_CHECK_LAUNCH();
}

}  // namespace cxr
