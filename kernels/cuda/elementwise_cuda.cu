// CUDA element-wise ops, the dense layer (cuBLAS) and the weighted BCE head, matching
// kernels/cpu/cpu_backend.cpp.
//
// Note [row-major dense layer in cuBLAS]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// cuBLAS is column-major; a row-major (r, c) matrix is the column-major (c, r) matrix, its
// transpose, with leading dimension c. So each row-major product is computed transposed:
//   y  = x . K          ->  y^T  (out, n)  = K^T (out, in) . x^T (in, n)        gemm(N, N)
//   dx = dy . K^T       ->  dx^T (in, n)   = K  (in, out)  . dy^T (out, n)      gemm(T, N)
//   dK = x^T . dy       ->  dK^T (out, in) = dy^T (out, n) . x (n, in)          gemm(N, T)
// where K is the Keras (in, out) kernel, whose memory read column-major is K^T with ld = out.
#include <climits>
#include <cmath>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_util.cuh"

namespace cxr {

namespace {

using cuda::ViewT;

template <typename Index>
__global__ void relu_forward_kernel(ViewT<Index> y, ViewT<Index> x) {
  const Index count = x.count();
  for (Index i = cuda::global_thread<Index>(); i < count; i += cuda::grid_threads<Index>()) {
    const float v = x.data[x.offset(i)];
    y.data[y.offset(i)] = v > 0.0f ? v : 0.0f;  // as std::max(0.0f, v): NaN -> 0
  }
}

template <typename Index>
__global__ void relu_backward_kernel(ViewT<Index> dx, ViewT<Index> dy, ViewT<Index> y) {
  const Index count = y.count();
  for (Index i = cuda::global_thread<Index>(); i < count; i += cuda::grid_threads<Index>())
    dx.data[dx.offset(i)] = y.data[y.offset(i)] > 0.0f ? dy.data[dy.offset(i)] : 0.0f;
}

// y (n, out) = bias broadcast over rows; the gemm then adds x . K (beta = 1).
__global__ void broadcast_rows_kernel(float* y, const float* bias, int64_t n, int64_t out) {
  const int64_t count = n * out;
  for (int64_t i = cuda::global_thread(); i < count; i += cuda::grid_threads()) y[i] = bias[i % out];
}

// dbias[j] (=) sum_i dy[i, j] in double; consecutive threads read consecutive j (coalesced).
__global__ void column_sums_kernel(float* dbias, const float* dy, int64_t n, int64_t out) {
  for (int64_t j = cuda::global_thread(); j < out; j += cuda::grid_threads()) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += dy[i * out + j];
    dbias[j] = float(s);
  }
}

// log(sigmoid(z)) without overflow, as the CPU's log_sigmoid.
__device__ double log_sigmoid(double z) { return z >= 0 ? -log1p(exp(-z)) : z - log1p(exp(z)); }

__global__ void sigmoid_kernel(float* y, const float* x, int64_t count) {
  for (int64_t i = cuda::global_thread(); i < count; i += cuda::grid_threads())
    y[i] = float(exp(log_sigmoid(x[i])));
}

// One block: dz for every element and the loss summed in double, reduced in the block and written
// by thread 0, so the whole head is one launch with no atomics and a deterministic sum.
__global__ void weighted_bce_kernel(float* loss, float* dz, const float* z, const float* labels,
                                    const float* w_pos, const float* w_neg, int64_t n, int64_t k) {
  const int64_t count = n * k;
  double total = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t j = i % k;
    const double zz = z[i], y = labels[i];
    // log(1 - s(z)) = log s(-z)
    total -= w_pos[j] * y * log_sigmoid(zz) + w_neg[j] * (1 - y) * log_sigmoid(-zz);
    const double s = exp(log_sigmoid(zz));
    dz[i] = float((w_pos[j] * y * (s - 1) + w_neg[j] * (1 - y) * s) / double(n));
  }
  total = cuda::block_sum(total);
  if (threadIdx.x == 0) *loss = float(total / double(n));
}

int gemm_dim(int64_t v, const char* what) {
  CXR_CHECK(v >= 0 && v <= INT_MAX, "dense layer: ", what, " = ", v, " does not fit cuBLAS's int");
  return int(v);
}

void check_views(const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
  check_device(a, Device::CUDA, a_name);
  check_device(b, Device::CUDA, b_name);
  check_plane_contiguous(a, a_name);
  check_plane_contiguous(b, b_name);
}

}  // namespace

void CudaBackend::relu_forward(const Tensor& y, const Tensor& x) {
  check_same_shape(y, x, "relu_forward");
  check_views(y, "relu_forward y", x, "relu_forward x");
  if (x.numel() == 0) return;
  cuda::with_index_type({&y, &x}, [&](auto tag) {
    using Index = decltype(tag);
    relu_forward_kernel<<<cuda::blocks_for(x.numel()), cuda::kThreads, 0, stream()>>>(cuda::view_of<Index>(y),
                                                                                      cuda::view_of<Index>(x));
  });
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::relu_backward(const Tensor& dx, const Tensor& dy, const Tensor& y) {
  check_same_shape(dx, dy, "relu_backward (dx vs dy)");
  check_same_shape(dy, y, "relu_backward (dy vs y)");
  check_views(dx, "relu_backward dx", dy, "relu_backward dy");
  check_views(y, "relu_backward y", y, "relu_backward y");
  if (y.numel() == 0) return;
  cuda::with_index_type({&dx, &dy, &y}, [&](auto tag) {
    using Index = decltype(tag);
    relu_backward_kernel<<<cuda::blocks_for(y.numel()), cuda::kThreads, 0, stream()>>>(
        cuda::view_of<Index>(dx), cuda::view_of<Index>(dy), cuda::view_of<Index>(y));
  });
  CXR_CUDA_CHECK_LAUNCH();
}

// Note [row-major dense layer in cuBLAS]
void CudaBackend::dense_forward(float* y, const float* x, const float* kernel, const float* bias, int64_t n,
                                int64_t in, int64_t out) {
  const int N = gemm_dim(n, "n"), I = gemm_dim(in, "in"), O = gemm_dim(out, "out");
  if (n * out == 0) return;
  broadcast_rows_kernel<<<cuda::blocks_for(n * out), cuda::kThreads, 0, stream()>>>(y, bias, n, out);
  CXR_CUDA_CHECK_LAUNCH();
  const float one = 1.0f;
  CXR_CUBLAS_CHECK(
      cublasSgemm(cublas_.get(), CUBLAS_OP_N, CUBLAS_OP_N, O, N, I, &one, kernel, O, x, I, &one, y, O));
}

void CudaBackend::dense_backward(float* dx, float* dkernel, float* dbias, const float* dy, const float* x,
                                 const float* kernel, int64_t n, int64_t in, int64_t out) {
  const int N = gemm_dim(n, "n"), I = gemm_dim(in, "in"), O = gemm_dim(out, "out");
  const float one = 1.0f, zero = 0.0f;
  if (dx && n * in > 0)
    CXR_CUBLAS_CHECK(
        cublasSgemm(cublas_.get(), CUBLAS_OP_T, CUBLAS_OP_N, I, N, O, &one, kernel, O, dy, O, &zero, dx, I));
  if (in * out > 0)
    CXR_CUBLAS_CHECK(
        cublasSgemm(cublas_.get(), CUBLAS_OP_N, CUBLAS_OP_T, O, I, N, &one, dy, O, x, I, &zero, dkernel, O));
  if (out == 0) return;
  column_sums_kernel<<<cuda::blocks_for(out), cuda::kThreads, 0, stream()>>>(dbias, dy, n, out);
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::sigmoid_forward(float* y, const float* x, int64_t count) {
  if (count == 0) return;
  sigmoid_kernel<<<cuda::blocks_for(count), cuda::kThreads, 0, stream()>>>(y, x, count);
  CXR_CUDA_CHECK_LAUNCH();
}

void CudaBackend::weighted_bce(float* loss, float* dz, const float* z, const float* labels,
                               const float* w_pos, const float* w_neg, int64_t n, int64_t k) {
  CXR_CHECK(n > 0 && k > 0, "weighted_bce on an empty batch: n ", n, ", k ", k);
  weighted_bce_kernel<<<1, cuda::kThreads, 0, stream()>>>(loss, dz, z, labels, w_pos, w_neg, n, k);
  CXR_CUDA_CHECK_LAUNCH();
}

}  // namespace cxr
