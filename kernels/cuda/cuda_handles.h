// RAII owners for the CUDA stream, the cuDNN and cuBLAS handles and the cuDNN descriptors: each is a
// std::unique_ptr over the library's opaque pointer type with a deleter that logs (never throws) when
// the destroy call fails.
#pragma once
#include <memory>
#include <type_traits>

#include "kernels/cuda/cuda_check.h"

namespace cxr::cuda {

struct StreamDeleter {
  void operator()(cudaStream_t s) const { CXR_CUDA_LOG(cudaStreamDestroy(s)); }
};
struct CudnnDeleter {
  void operator()(cudnnHandle_t h) const { CXR_CUDNN_LOG(cudnnDestroy(h)); }
};
struct CublasDeleter {
  void operator()(cublasHandle_t h) const { CXR_CUBLAS_LOG(cublasDestroy(h)); }
};
struct TensorDescDeleter {
  void operator()(cudnnTensorDescriptor_t d) const { CXR_CUDNN_LOG(cudnnDestroyTensorDescriptor(d)); }
};
struct FilterDescDeleter {
  void operator()(cudnnFilterDescriptor_t d) const { CXR_CUDNN_LOG(cudnnDestroyFilterDescriptor(d)); }
};
struct ConvDescDeleter {
  void operator()(cudnnConvolutionDescriptor_t d) const {
    CXR_CUDNN_LOG(cudnnDestroyConvolutionDescriptor(d));
  }
};

struct DeviceMemoryDeleter {
  void operator()(void* p) const { CXR_CUDA_LOG(cudaFree(p)); }
};

template <typename Handle, typename Deleter>
using Owner = std::unique_ptr<std::remove_pointer_t<Handle>, Deleter>;

using StreamPtr = Owner<cudaStream_t, StreamDeleter>;
using CudnnPtr = Owner<cudnnHandle_t, CudnnDeleter>;
using CublasPtr = Owner<cublasHandle_t, CublasDeleter>;
using TensorDesc = Owner<cudnnTensorDescriptor_t, TensorDescDeleter>;
using FilterDesc = Owner<cudnnFilterDescriptor_t, FilterDescDeleter>;
using ConvDesc = Owner<cudnnConvolutionDescriptor_t, ConvDescDeleter>;
using DeviceDoubles = std::unique_ptr<double, DeviceMemoryDeleter>;  // cudaMalloc'd, outside the arena

}  // namespace cxr::cuda
