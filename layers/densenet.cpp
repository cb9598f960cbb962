#include "layers/densenet.h"

namespace cxr {

void DenseLayer::forward(const StepContext& s, const Scratch& sc, const Tensor& block) const {
  const Tensor x = block.channels(0, c_in);
  const Shape wide{x.n(), c_in, x.h(), x.w()};
  const Tensor z1 = sc.view(s, sc.wide1, wide);
  bn0.forward(s, z1, x, /*relu=*/true, fresh_from);
  const Shape narrow = conv1.out_shape(wide);
  const Tensor b(s.arena.floats(bottleneck), narrow, s.be.device());
  conv1.forward(s, b, z1);
  const Tensor z2 = sc.view(s, sc.narrow1, narrow);
  bn1.forward(s, z2, b, /*relu=*/true);
  conv2.forward(s, block.channels(c_in, c_in + growth), z2);
}

void DenseLayer::backward(const StepContext& s, const Scratch& sc, const Tensor& block,
                          const Tensor& dblock) const {
  const Tensor x = block.channels(0, c_in);
  const Shape wide{x.n(), c_in, x.h(), x.w()};
  const Shape narrow = conv1.out_shape(wide);
  const Tensor b(s.arena.floats(bottleneck), narrow, s.be.device());
  const Tensor g = dblock.channels(c_in, c_in + growth);
  const Tensor z1 = sc.view(s, sc.wide1, wide), dz1 = sc.view(s, sc.wide2, wide);
  if (recompute_bottleneck) {  // wide1 <- z1 = relu(bn0(x)), kept for the wide part below; b <- conv1(z1)
    bn0.recompute(s, z1, x, true);
    conv1.forward(s, b, z1);
  }
  // narrow1 <- z2 = relu(bn1(b)); narrow2 <- dz2; then narrow1 <- db.
  const Tensor z2 = sc.view(s, sc.narrow1, narrow), dz2 = sc.view(s, sc.narrow2, narrow);
  bn1.recompute(s, z2, b, true);
  conv2.backward_filter(s, g, z2);
  conv2.backward_data(s, dz2, GradMode::Overwrite, g);
  const Tensor db = z2;  // z2 is dead once conv2's filter gradient has it
  bn1.backward_relu(s, db, GradMode::Overwrite, dz2, b);
  // wide1 <- z1 = relu(bn0(x)) (unless still there); wide2 <- dz1; dblock[:, :c_in] += bn0 backward.
  if (!recompute_bottleneck) bn0.recompute(s, z1, x, true);
  conv1.backward_filter(s, db, z1);
  conv1.backward_data(s, dz1, GradMode::Overwrite, db);
  bn0.backward_relu(s, dblock.channels(0, c_in), GradMode::Accumulate, dz1, x);
}

void DenseLayer::backward_data_frozen(const StepContext& s, const Scratch& sc, const Tensor& block,
                                      const Tensor& dblock) const {
  const Tensor x = block.channels(0, c_in);
  const Shape wide{x.n(), c_in, x.h(), x.w()};
  const Shape narrow = conv1.out_shape(wide);
  const Tensor b(s.arena.floats(bottleneck), narrow, s.be.device());
  // wide1 <- z1 = relu(bn0(x)); b <- conv1(z1) (inference keeps one shared bottleneck).
  const Tensor z1 = sc.view(s, sc.wide1, wide), dz1 = sc.view(s, sc.wide2, wide);
  bn0.forward(s, z1, x, /*relu=*/true);
  conv1.forward(s, b, z1);
  // narrow2 <- dz2; narrow1 <- db; wide2 <- dz1; dblock[:, :c_in] += bn0's data gradient.
  const Tensor dz2 = sc.view(s, sc.narrow2, narrow), db = sc.view(s, sc.narrow1, narrow);
  conv2.backward_data(s, dz2, GradMode::Overwrite, dblock.channels(c_in, c_in + growth));
  bn1.backward_relu_frozen(s, db, GradMode::Overwrite, dz2, b);
  conv1.backward_data(s, dz1, GradMode::Overwrite, db);
  bn0.backward_relu_frozen(s, dblock.channels(0, c_in), GradMode::Accumulate, dz1, x);
}

// The transition runs BN-ReLU -> avg-pool -> 1x1 conv rather than Keras's BN-ReLU -> 1x1 conv ->
// avg-pool: a 1x1 convolution and an average pool are both linear and act on different axes, so they
// commute (also for odd sizes: each output averages the same four inputs), and the convolution then
// runs on a quarter of the pixels. The output equals Keras's up to float rounding.
void Transition::forward(const StepContext& s, const Scratch& sc, const Tensor& block,
                         const Tensor& out) const {
  const Tensor z = sc.view(s, sc.wide1, block.shape);
  bn.forward(s, z, block, true, fresh_from);
  const Tensor p = sc.view(s, sc.narrow1, pooled_shape(block.shape));
  s.be.avgpool_forward(p, z, pool);
  conv.forward(s, out, p);
}

void Transition::backward(const StepContext& s, const Scratch& sc, const Tensor& block,
                          const Tensor& dblock, const Tensor& dout) const {
  // wide1 <- z = relu(bn(block)); narrow1 <- p = pool(z); narrow2 <- dp; wide2 <- dz.
  const Tensor z = sc.view(s, sc.wide1, block.shape), dz = sc.view(s, sc.wide2, block.shape);
  bn.recompute(s, z, block, true);
  const Shape ps = pooled_shape(block.shape);
  const Tensor p = sc.view(s, sc.narrow1, ps), dp = sc.view(s, sc.narrow2, ps);
  s.be.avgpool_forward(p, z, pool);
  conv.backward_filter(s, dout, p);
  conv.backward_data(s, dp, GradMode::Overwrite, dout);
  s.be.avgpool_backward(dz, dp, pool);
  bn.backward_relu(s, dblock, GradMode::Overwrite, dz, block);
}

void Transition::backward_data_frozen(const StepContext& s, const Scratch& sc, const Tensor& block,
                                      const Tensor& dblock, const Tensor& dout) const {
  // narrow2 <- dp; wide2 <- dz; dblock (=) bn's data gradient.
  const Tensor dp = sc.view(s, sc.narrow2, pooled_shape(block.shape)), dz = sc.view(s, sc.wide2, block.shape);
  conv.backward_data(s, dp, GradMode::Overwrite, dout);
  s.be.avgpool_backward(dz, dp, pool);
  bn.backward_relu_frozen(s, dblock, GradMode::Overwrite, dz, block);
}

}  // namespace cxr
