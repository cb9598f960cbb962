// DenseNet building blocks, written once against the op interface (engine/backend.h):
// the dense layer BN-ReLU-conv1x1(128)-BN-ReLU-conv3x3(32) and the transition
// BN-ReLU-avgpool2x2-conv1x1(C/2) (Keras pools after the convolution; the two orders are equal, ours
// convolves a quarter of the pixels). Both read and write channel slices of one preallocated block
// buffer per dense block: concatenation copies nothing.
//
// Memory (Note [DenseNet memory]): forward keeps the block buffers, each layer's bottleneck
// (conv1x1 output, before its BN) and the BN statistics; every BN-ReLU output is recomputed in
// backward into shared scratch (Scratch below), and so is the transition's pooled BN-ReLU output. With recompute_bottleneck the bottlenecks are not kept
// either: backward recomputes one from the block buffer (BN-ReLU, 1x1 convolution) before using it.
#pragma once
#include <vector>

#include "layers/batchnorm.h"
#include "layers/conv.h"

namespace cxr {

// Shared scratch, sized as the maximum over every use: "wide" buffers hold a full block width,
// "narrow" ones a bottleneck (or a transition's pooled input). The holder of each at every moment is
// written out in the backward code.
struct Scratch {
  MemoryPlan::Id wide1 = 0, wide2 = 0, narrow1 = 0, narrow2 = 0;
  Tensor view(const StepContext& s, MemoryPlan::Id id, const Shape& shape) const {
    return Tensor(s.arena.floats(id), shape, s.be.device());
  }
};

struct DenseLayer {
  BatchNorm bn0, bn1;
  Conv2d conv1, conv2;
  int64_t c_in = 0;            // channels read from the block buffer
  int64_t growth = 32;         // channels written after them
  MemoryPlan::Id bottleneck{};  // (N, 128, H, W): conv1 output, kept for backward
  bool recompute_bottleneck = false;  // bottleneck is shared scratch: backward recomputes it first
  int64_t fresh_from = 0;  // bn0's first channel without statistics yet (Note [BN statistics once per channel])

  // block: (N, C_block, H, W), reads [0, c_in), writes [c_in, c_in + growth).
  void forward(const StepContext& s, const Scratch& sc, const Tensor& block) const;
  // dblock[:, c_in:c_in+growth] is complete on entry; adds this layer's share to dblock[:, :c_in].
  void backward(const StepContext& s, const Scratch& sc, const Tensor& block, const Tensor& dblock) const;
  // The same data gradient through an inference forward (Note [Explaining backward] in
  // engine/model.h): no parameter gradient, running BN statistics; the bottleneck is recomputed.
  void backward_data_frozen(const StepContext& s, const Scratch& sc, const Tensor& block,
                            const Tensor& dblock) const;
};

struct Transition {
  BatchNorm bn;
  Conv2d conv;
  PoolGeom pool{2, 2, 0};
  int64_t fresh_from = 0;  // bn's first channel without statistics yet (the block's last layer's output)

  // (N, C, H/2, W/2): the pooled BN-ReLU output the 1x1 convolution reads.
  Shape pooled_shape(const Shape& block) const { return {block.n, block.c, pool.out_size(block.h), pool.out_size(block.w)}; }

  // out: (N, C/2, H/2, W/2), the first channels of the next block's buffer.
  void forward(const StepContext& s, const Scratch& sc, const Tensor& block, const Tensor& out) const;
  // dblock (=) from dout (complete).
  void backward(const StepContext& s, const Scratch& sc, const Tensor& block, const Tensor& dblock,
                const Tensor& dout) const;
  // dblock (=) from dout through an inference forward; no parameter gradient.
  void backward_data_frozen(const StepContext& s, const Scratch& sc, const Tensor& block, const Tensor& dblock,
                            const Tensor& dout) const;
};

}  // namespace cxr
