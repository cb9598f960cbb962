// The cuDNN convolution plan cache of the CUDA backend: a plain key (direction, shapes, batch
// strides, geometry) maps to the descriptors for those views and the cuDNN heuristics' ranked list
// of strict-FP32 algorithms with their workspace sizes. Which algorithm runs is decided per call as
// the first one in that list whose workspace fits the Workspace handed in (see conv_cuda.cu).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "engine/backend.h"
#include "kernels/cuda/cuda_handles.h"

namespace cxr::cuda {

enum class ConvDirection { Forward, BackwardData, BackwardFilter };
const char* direction_name(ConvDirection d);

struct ConvKey {
  ConvDirection direction = ConvDirection::Forward;
  Shape y, x, w;  // y (N, K, P, Q), x (N, C, H, W), w (K, C, R, R)
  int64_t y_batch_stride = 0, x_batch_stride = 0;
  int64_t kernel = 1, stride = 1, pad = 0;

  auto tie() const {
    return std::tie(direction, y.n, y.c, y.h, y.w, x.n, x.c, x.h, x.w, w.n, w.c, w.h, w.w, y_batch_stride,
                    x_batch_stride, kernel, stride, pad);
  }
  bool operator<(const ConvKey& o) const { return tie() < o.tie(); }
  // "forward: y (..) stride .., x (..) stride .., w (..), kernel k stride s pad p" for messages.
  std::string str() const;
};

// One cuDNN algorithm of the heuristics' list (the enum of the key's direction, stored as int).
struct ConvAlgo {
  int algo = 0;
  size_t workspace_bytes = 0;
  bool usable = true;  // false once cuDNN refused to run it (cudnn_refused)
};

// Whether a status returned by running an algorithm is cuDNN declining these views (try the next
// algorithm) rather than a failure (report it). Note [cuDNN refusals] in conv_cuda.cu.
inline bool cudnn_refused(cudnnStatus_t s) {
  return CUDNN_STATUS_CATEGORY(int(s)) == CUDNN_STATUS_NOT_SUPPORTED || s == CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER;
}

// "IMPLICIT_PRECOMP_GEMM" etc.: the enum's name in the direction's algorithm list, for the log.
const char* algorithm_name(ConvDirection d, int algo);

struct ConvPlan {
  TensorDesc y, x;              // strided NCHW views
  FilterDesc w;                 // packed KCRS
  ConvDesc conv;                // cross-correlation, strict FP32 (Note [TF32] in cuda_backend.h)
  std::vector<ConvAlgo> algos;  // the heuristics' order: fastest expected first
  int settled = -1;             // the algorithm the last call ran; logged whenever it changes
};

// std::map: node-based, so a ConvPlan& stays valid while later plans are inserted.
using ConvPlanCache = std::map<ConvKey, ConvPlan>;

}  // namespace cxr::cuda
