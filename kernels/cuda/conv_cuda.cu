// CUDA convolution through cuDNN: descriptors for strided NCHW views, a plan cache keyed by a plain
// struct, and the three directions. Cross-correlation (no kernel flip), zero padding, as the CPU's
// im2col formulation in kernels/cpu/conv_cpu.cpp.
//
// Note [legacy cuDNN API]
// ~~~~~~~~~~~~~~~~~~~~~~~
// cuDNN 9 still ships the descriptor API used here (cudnnSetTensor4dDescriptorEx,
// cudnnGetConvolution*Algorithm_v7, cudnnConvolution*) in libcudnn_cnn, marked deprecated: the
// attribute is only active with CUDNN_WARN_DEPRECATED, which we do not define. The graph API
// (cudnn-frontend) is its successor; moving there is a later, separate change.
//
// Note [conv workspace policy]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The heuristics (cudnnGetConvolution*Algorithm_v7, which never touch user memory) rank the
// algorithms for one key once; the list and its workspace sizes are cached.
//   - conv2d_workspace_bytes is given the views' batch strides, so it plans the very keys the ops
//     will run (a channel slice of a block buffer is another key than a packed tensor of its shape,
//     with its own ranking): per direction, the first algorithm needing at most
//     kConvWorkspaceLimit; it returns the maximum over the 3 directions.
//   - each op runs the first algorithm of its own key's list whose workspace fits the Workspace it
//     is given, so it never writes past it; with the workspace planned as above that is the
//     algorithm planned for it. When none fits, the op throws naming the key, the workspace given
//     and the smallest one needed.
//   - an algorithm cuDNN refuses at run time (Note [cuDNN refusals]) is marked unusable in the
//     cache and the next one is tried. The algorithm a key settles on is logged on stderr, once
//     (again only if a refusal moves it), when CXR_LOG_CUDNN is set.
//
// Note [cuDNN refusals]
// ~~~~~~~~~~~~~~~~~~~~~
// cuDNN 9 declines an algorithm it cannot run for a layout with a code of the NOT_SUPPORTED
// category: 3000 itself or a sub-code 3001-3014 (shape, layout, shared memory, padding, ...), tested
// with CUDNN_STATUS_CATEGORY. A pointer misaligned for the algorithm's vector loads (a channel slice
// can start anywhere in a block buffer) is CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER (2003): the
// same kind of refusal, the next algorithm may not need the alignment. Any other status is an error.
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "kernels/cuda/cuda_backend.h"

namespace cxr {

namespace cuda {

const char* direction_name(ConvDirection d) {
  switch (d) {
    case ConvDirection::Forward:
      return "conv2d_forward";
    case ConvDirection::BackwardData:
      return "conv2d_backward_data";
    case ConvDirection::BackwardFilter:
      return "conv2d_backward_filter";
  }
  return "conv2d";
}

std::string ConvKey::str() const {
  std::ostringstream os;
  os << direction_name(direction) << ": y " << y.str() << " batch stride " << y_batch_stride << ", x "
     << x.str() << " batch stride " << x_batch_stride << ", w " << w.str() << ", kernel " << kernel
     << " stride " << stride << " pad " << pad;
  return os.str();
}

const char* algorithm_name(ConvDirection d, int algo) {
  static const char* const forward[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT",
                                        "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
  static const char* const data[] = {"ALGO_0", "ALGO_1", "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
  static const char* const filter[] = {"ALGO_0", "ALGO_1", "FFT", "ALGO_3", "WINOGRAD", "WINOGRAD_NONFUSED",
                                       "FFT_TILING"};
  auto pick = [algo](const char* const* names, int count) { return algo >= 0 && algo < count ? names[algo] : "?"; };
  switch (d) {
    case ConvDirection::Forward:
      return pick(forward, 8);
    case ConvDirection::BackwardData:
      return pick(data, 6);
    case ConvDirection::BackwardFilter:
      return pick(filter, 7);
  }
  return "?";
}

}  // namespace cuda

namespace {

// The settled algorithms go to stderr only when CXR_LOG_CUDNN is set (scripts/gpu_check.sh sets it):
// a DenseNet121 step has about 200 keys, too many lines for every training run's log.
bool log_algorithms() {
  static const bool on = [] {
    const char* v = std::getenv("CXR_LOG_CUDNN");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

using cuda::ConvAlgo;
using cuda::ConvDirection;
using cuda::ConvKey;
using cuda::ConvPlan;

int checked_int(int64_t v, const char* what, const ConvKey& key) {
  if (v < 0 || v > INT_MAX) CXR_FAIL(key.str(), ": ", what, " = ", v, " does not fit cuDNN's int");
  return int(v);
}

cuda::TensorDesc tensor_desc(const Shape& s, int64_t batch_stride, const ConvKey& key) {
  // cuDNN's legacy descriptors address at most 2^31 - 1 elements per tensor.
  checked_int((s.n - 1) * batch_stride + s.c * s.h * s.w, "elements spanned by a view", key);
  cudnnTensorDescriptor_t d = nullptr;
  CXR_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
  cuda::TensorDesc owner(d);
  CXR_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d, CUDNN_DATA_FLOAT, int(s.n), int(s.c), int(s.h), int(s.w),
                                               int(batch_stride), int(s.h * s.w), int(s.w), 1));
  return owner;
}

cuda::FilterDesc filter_desc(const Shape& w, const ConvKey& key) {
  checked_int(w.numel(), "filter elements", key);
  cudnnFilterDescriptor_t d = nullptr;
  CXR_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
  cuda::FilterDesc owner(d);
  CXR_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, int(w.n), int(w.c),
                                             int(w.h), int(w.w)));
  return owner;
}

cuda::ConvDesc conv_desc(const ConvKey& key) {
  const int pad = checked_int(key.pad, "pad", key), stride = checked_int(key.stride, "stride", key);
  cudnnConvolutionDescriptor_t d = nullptr;
  CXR_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
  cuda::ConvDesc owner(d);
  CXR_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                  CUDNN_DATA_FLOAT));
  CXR_CUDNN_CHECK(cudnnSetConvolutionMathType(d, CUDNN_FMA_MATH));  // Note [TF32]
  return owner;
}

// The heuristics' results in their order, keeping successful strict-FP32 entries whose workspace
// size cuDNN can state; each algorithm once.
template <typename Perf, typename WorkspaceOf>
std::vector<ConvAlgo> strict_fp32_algos(const std::vector<Perf>& perf, int returned,
                                        WorkspaceOf workspace_of) {
  std::vector<ConvAlgo> algos;
  for (int i = 0; i < returned; ++i) {
    const Perf& p = perf[size_t(i)];
    if (p.status != CUDNN_STATUS_SUCCESS || p.mathType != CUDNN_FMA_MATH) continue;  // Note [TF32]
    const int algo = int(p.algo);
    if (std::any_of(algos.begin(), algos.end(), [&](const ConvAlgo& a) { return a.algo == algo; })) continue;
    size_t bytes = 0;
    if (workspace_of(p.algo, &bytes) != CUDNN_STATUS_SUCCESS) continue;
    algos.push_back(ConvAlgo{algo, bytes, true});
  }
  return algos;
}

std::vector<ConvAlgo> ranked_forward(cudnnHandle_t h, const ConvPlan& p) {
  int max_count = 0;
  CXR_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
  int returned = 0;
  CXR_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x.get(), p.w.get(), p.conv.get(), p.y.get(),
                                                         int(perf.size()), &returned, perf.data()));
  return strict_fp32_algos(perf, returned, [&](cudnnConvolutionFwdAlgo_t a, size_t* bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, p.x.get(), p.w.get(), p.conv.get(), p.y.get(), a,
                                                   bytes);
  });
}

std::vector<ConvAlgo> ranked_backward_data(cudnnHandle_t h, const ConvPlan& p) {
  int max_count = 0;
  CXR_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
  int returned = 0;
  CXR_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
      h, p.w.get(), p.y.get(), p.conv.get(), p.x.get(), int(perf.size()), &returned, perf.data()));
  return strict_fp32_algos(perf, returned, [&](cudnnConvolutionBwdDataAlgo_t a, size_t* bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w.get(), p.y.get(), p.conv.get(), p.x.get(), a,
                                                        bytes);
  });
}

std::vector<ConvAlgo> ranked_backward_filter(cudnnHandle_t h, const ConvPlan& p) {
  int max_count = 0;
  CXR_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
  int returned = 0;
  CXR_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
      h, p.x.get(), p.y.get(), p.conv.get(), p.w.get(), int(perf.size()), &returned, perf.data()));
  return strict_fp32_algos(perf, returned, [&](cudnnConvolutionBwdFilterAlgo_t a, size_t* bytes) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x.get(), p.y.get(), p.conv.get(), p.w.get(), a,
                                                          bytes);
  });
}

ConvKey make_key(ConvDirection dir, const Shape& y, int64_t y_bstride, const Shape& x, int64_t x_bstride,
                 const Shape& w, const ConvGeom& g) {
  ConvKey k;
  k.direction = dir;
  k.y = y;
  k.x = x;
  k.w = w;
  k.y_batch_stride = y_bstride;
  k.x_batch_stride = x_bstride;
  k.kernel = g.kernel;
  k.stride = g.stride;
  k.pad = g.pad;
  return k;
}

// Runs `run(algo, workspace, bytes)` with the first usable algorithm whose workspace fits `ws`.
template <typename Run>
void run_first_fitting(ConvPlan& plan, const ConvKey& key, Workspace ws, Run run) {
  const size_t available = ws.data ? ws.bytes : 0;
  size_t smallest = SIZE_MAX;
  for (ConvAlgo& a : plan.algos) {
    if (!a.usable) continue;
    smallest = std::min(smallest, a.workspace_bytes);
    if (a.workspace_bytes > available) continue;
    const cudnnStatus_t status = run(a.algo, ws.data, available);
    if (cuda::cudnn_refused(status)) {
      a.usable = false;  // Note [cuDNN refusals]
      continue;
    }
    if (status != CUDNN_STATUS_SUCCESS) {
      const std::string what = key.str() + " with algorithm " + std::to_string(a.algo);
      cuda::report_failure("cuDNN", what.c_str(), __FILE__, __LINE__, int(status),
                           cudnnGetErrorString(status));
    }
    if (plan.settled != a.algo) {
      plan.settled = a.algo;
      if (log_algorithms())
        std::fprintf(stderr, "cxr: cuDNN %s: algorithm %d (%s), workspace %zu bytes\n", key.str().c_str(), a.algo,
                   cuda::algorithm_name(key.direction, a.algo), a.workspace_bytes);
    }
    return;
  }
  if (smallest == SIZE_MAX) CXR_FAIL(key.str(), ": cuDNN ran none of its strict-FP32 algorithms");
  CXR_FAIL(key.str(), ": no cuDNN algorithm fits the workspace of ", available, " bytes (the smallest needs ",
           smallest, "); size it with conv2d_workspace_bytes");
}

void check_views(const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
  check_device(a, Device::CUDA, a_name);
  check_device(b, Device::CUDA, b_name);
  check_plane_contiguous(a, a_name);
  check_plane_contiguous(b, b_name);
}

}  // namespace

cuda::ConvPlan& CudaBackend::conv_plan(const ConvKey& key) {
  auto it = conv_plans_.find(key);
  if (it != conv_plans_.end()) return it->second;
  ConvPlan plan;
  plan.y = tensor_desc(key.y, key.y_batch_stride, key);
  plan.x = tensor_desc(key.x, key.x_batch_stride, key);
  plan.w = filter_desc(key.w, key);
  plan.conv = conv_desc(key);
  switch (key.direction) {
    case ConvDirection::Forward:
      plan.algos = ranked_forward(cudnn_.get(), plan);
      break;
    case ConvDirection::BackwardData:
      plan.algos = ranked_backward_data(cudnn_.get(), plan);
      break;
    case ConvDirection::BackwardFilter:
      plan.algos = ranked_backward_filter(cudnn_.get(), plan);
      break;
  }
  if (plan.algos.empty())
    CXR_FAIL(key.str(), ": the cuDNN heuristics offer no strict-FP32 (CUDNN_FMA_MATH) algorithm");
  return conv_plans_.emplace(key, std::move(plan)).first->second;
}

size_t CudaBackend::conv2d_workspace_bytes(const Shape& y, int64_t y_batch_stride, const Shape& x,
                                           int64_t x_batch_stride, const Shape& w, const ConvGeom& g) {
  check_conv_shapes(y, x, w, g, "conv2d_workspace_bytes");
  CXR_CHECK(y_batch_stride >= y.c * y.h * y.w && x_batch_stride >= x.c * x.h * x.w,
            "conv2d_workspace_bytes: batch strides ", y_batch_stride, " (y ", y.str(), ") and ", x_batch_stride,
            " (x ", x.str(), ") must be at least C*H*W");
  size_t need = 0;
  for (ConvDirection dir :
       {ConvDirection::Forward, ConvDirection::BackwardData, ConvDirection::BackwardFilter}) {
    const ConvKey key = make_key(dir, y, y_batch_stride, x, x_batch_stride, w, g);
    const ConvPlan& plan = conv_plan(key);
    // Note [conv workspace policy]: the first algorithm within the limit.
    const auto fits = std::find_if(plan.algos.begin(), plan.algos.end(), [](const ConvAlgo& a) {
      return a.usable && a.workspace_bytes <= kConvWorkspaceLimit;
    });
    if (fits == plan.algos.end())
      CXR_FAIL(key.str(), ": every cuDNN algorithm needs more than ", kConvWorkspaceLimit,
               " bytes of workspace");
    need = std::max(need, fits->workspace_bytes);
  }
  return need;
}

void CudaBackend::conv2d_forward(const Tensor& y, const Tensor& x, const float* w, const Shape& wshape,
                                 const ConvGeom& g, Workspace ws) {
  check_conv_shapes(y.shape, x.shape, wshape, g, "conv2d_forward");
  check_views(y, "conv2d_forward y", x, "conv2d_forward x");
  const ConvKey key =
      make_key(ConvDirection::Forward, y.shape, y.batch_stride, x.shape, x.batch_stride, wshape, g);
  ConvPlan& plan = conv_plan(key);
  const float one = 1.0f, zero = 0.0f;
  run_first_fitting(plan, key, ws, [&](int algo, void* work, size_t bytes) {
    return cudnnConvolutionForward(cudnn_.get(), &one, plan.x.get(), x.data, plan.w.get(), w, plan.conv.get(),
                                   cudnnConvolutionFwdAlgo_t(algo), work, bytes, &zero, plan.y.get(), y.data);
  });
}

void CudaBackend::conv2d_backward_data(const Tensor& dx, GradMode mode, const Tensor& dy, const float* w,
                                       const Shape& wshape, const ConvGeom& g, Workspace ws) {
  check_conv_shapes(dy.shape, dx.shape, wshape, g, "conv2d_backward_data");
  check_views(dx, "conv2d_backward_data dx", dy, "conv2d_backward_data dy");
  const ConvKey key =
      make_key(ConvDirection::BackwardData, dy.shape, dy.batch_stride, dx.shape, dx.batch_stride, wshape, g);
  ConvPlan& plan = conv_plan(key);
  // beta = 0: cuDNN does not read dx (it may hold NaN); beta = 1 adds to it.
  const float one = 1.0f, beta = mode == GradMode::Accumulate ? 1.0f : 0.0f;
  run_first_fitting(plan, key, ws, [&](int algo, void* work, size_t bytes) {
    return cudnnConvolutionBackwardData(cudnn_.get(), &one, plan.w.get(), w, plan.y.get(), dy.data,
                                        plan.conv.get(), cudnnConvolutionBwdDataAlgo_t(algo), work, bytes,
                                        &beta, plan.x.get(), dx.data);
  });
}

void CudaBackend::conv2d_backward_filter(float* dw, GradMode mode, const Shape& wshape, const Tensor& dy,
                                         const Tensor& x, const ConvGeom& g, Workspace ws) {
  check_conv_shapes(dy.shape, x.shape, wshape, g, "conv2d_backward_filter");
  check_views(dy, "conv2d_backward_filter dy", x, "conv2d_backward_filter x");
  const ConvKey key =
      make_key(ConvDirection::BackwardFilter, dy.shape, dy.batch_stride, x.shape, x.batch_stride, wshape, g);
  ConvPlan& plan = conv_plan(key);
  const float one = 1.0f, beta = mode == GradMode::Accumulate ? 1.0f : 0.0f;
  run_first_fitting(plan, key, ws, [&](int algo, void* work, size_t bytes) {
    return cudnnConvolutionBackwardFilter(cudnn_.get(), &one, plan.x.get(), x.data, plan.y.get(), dy.data,
                                          plan.conv.get(), cudnnConvolutionBwdFilterAlgo_t(algo), work, bytes,
                                          &beta, plan.w.get(), dw);
  });
}

}  // namespace cxr
