// The whole DenseNet121 on the CUDA backend against the CPU backend (the oracle, itself checked
// against tf.keras in test_densenet_keras.cpp): logits in both modes, every gradient, the running
// statistics. Skips with a message when no GPU is present.
//
// Tolerance 1e-4 relative, norm-wise: two float32 implementations (cuDNN algorithms vs im2col+BLAS)
// with different summation orders through 120 convolutions; the CPU-vs-Keras comparison of the same
// network at the same point measures ~2e-6. The test-generator weights keep pre-activations away from
// the ReLU kink (see tests/fixtures/make_densenet121_fixture.py), so no unit flips between the two.
#include "engine/init.h"
#include "engine/model.h"
#include "test_util.h"

namespace cxr {
namespace {

constexpr double kTol = 1e-4;

void load_inputs(DenseNet& net, uint64_t seed) {
  const int64_t K = net.config().classes, N = net.batch();
  auto x = test::random_vector(size_t(net.input().numel()), seed, -2, 2);
  auto y = test::random_vector(size_t(N * K), seed + 1, 0, 1);
  for (auto& v : y) v = v < 0.3f ? 1.0f : 0.0f;
  auto wp = test::random_vector(size_t(K), seed + 2, 0.2f, 0.8f), wn = wp;
  for (auto& v : wn) v = 1 - v;
  Backend& be = net.backend();
  be.copy_to_device(net.input().data, x.data(), sizeof(float) * x.size());
  be.copy_to_device(net.labels(), y.data(), sizeof(float) * y.size());
  be.copy_to_device(net.w_pos(), wp.data(), sizeof(float) * wp.size());
  be.copy_to_device(net.w_neg(), wn.data(), sizeof(float) * wn.size());
  be.synchronize();
}

// The same weights (the test generator) and inputs in both networks.
void same_start(DenseNet& a, DenseNet& b, uint64_t seed) {
  std::vector<float> params, state;
  init_test_generator(a.table(), params, state);
  a.set_weights(params, state);
  b.set_weights(params, state);
  load_inputs(a, seed);
  load_inputs(b, seed);
}

TEST(DenseNetGpu, MatchesCpuBackendInBothModesWithAllGradients) {
  CXR_REQUIRE_CUDA(gpu);
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto cpu = make_cpu_backend();
  const auto cfg = DenseNetConfig::from_arch("densenet121", 14);
  DenseNet a(*cpu, cfg, 2, 72, 72), b(*gpu, cfg, 2, 72, 72);
  same_start(a, b, seed);

  a.forward(false);
  b.forward(false);
  EXPECT_LT(test::rel_error(b.get_logits(), a.get_logits()), kTol) << "inference logits";

  a.forward(true);
  b.forward(true);
  EXPECT_LT(test::rel_error(b.get_logits(), a.get_logits()), kTol) << "training logits";
  const float la = a.loss(), lb = b.loss();
  EXPECT_LT(std::abs(la - lb) / std::abs(la), kTol) << "loss";
  gpu->fill(b.grads(), std::numeric_limits<float>::quiet_NaN(), b.table().trainable_count());  // unwritten -> NaN
  a.backward();
  b.backward();
  EXPECT_LT(test::rel_error(b.get_grads(), a.get_grads()), kTol) << "all gradients";
  std::vector<float> sa, sb;
  a.get_weights(nullptr, &sa);
  b.get_weights(nullptr, &sb);
  EXPECT_LT(test::rel_error(sb, sa), kTol) << "running statistics";
}

TEST(DenseNetGpu, RecomputedBottlenecksMatchTheCpuStep) {
  // The GPU step recomputing every bottleneck in backward against the CPU step that keeps them.
  CXR_REQUIRE_CUDA(gpu);
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto cpu = make_cpu_backend();
  auto cfg = DenseNetConfig::from_arch("densenet121", 14), frugal = cfg;
  frugal.recompute_bottleneck = true;
  DenseNet a(*cpu, cfg, 2, 72, 72), b(*gpu, frugal, 2, 72, 72);
  same_start(a, b, seed);
  a.forward(true);
  b.forward(true);
  a.loss();
  b.loss();
  gpu->fill(b.grads(), std::numeric_limits<float>::quiet_NaN(), b.table().trainable_count());
  a.backward();
  b.backward();
  EXPECT_LT(test::rel_error(b.get_grads(), a.get_grads()), kTol) << "all gradients";
}

}  // namespace
}  // namespace cxr
