// How the CUDA batch-norm statistics are spread over blocks (Note [BN statistics over many blocks]
// in kernels/cuda/batchnorm_cuda.cu). A plain host function, tested on machines without a GPU.
#pragma once
#include <algorithm>
#include <cstdint>

namespace cxr {

// Blocks that share one channel's N*H*W elements: enough that channels * splits reaches
// target_blocks, each block keeping at least min_chunk elements, and channels * splits at most
// max_blocks (the partial sums' scratch). 1: one block per channel, the single-pass kernel.
inline int64_t bn_stat_splits(int64_t channels, int64_t per_channel, int64_t target_blocks, int64_t min_chunk,
                              int64_t max_blocks) {
  if (channels <= 0 || per_channel <= 0 || min_chunk <= 0) return 1;
  int64_t splits = (target_blocks + channels - 1) / channels;
  splits = std::min(splits, per_channel / min_chunk);
  splits = std::min(splits, max_blocks / channels);
  return std::max<int64_t>(splits, 1);
}

}  // namespace cxr
