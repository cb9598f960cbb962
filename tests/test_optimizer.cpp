// Adam: the CPU kernel against the formula written out in double (torch.optim.Adam's), and the CUDA
// kernel against the CPU one.
#include <cmath>

#include "kernels/cpu/ops_cpu.h"
#include "test_util.h"

namespace cxr {
namespace {

// torch.optim.Adam, one parameter, in double, straight from its documentation.
struct ReferenceAdam {
  double p, m = 0, v = 0;
  void step(double g, const AdamParams& a) {
    g += a.weight_decay * p;
    m = a.beta1 * m + (1 - a.beta1) * g;
    v = a.beta2 * v + (1 - a.beta2) * g * g;
    const double mh = m / (1 - std::pow(a.beta1, double(a.step))), vh = v / (1 - std::pow(a.beta2, double(a.step)));
    p -= a.lr * mh / (std::sqrt(vh) + a.eps);
  }
};

TEST(CpuAdam, MatchesTheFormulaOverSeveralSteps) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const size_t n = 1000;
  auto p = test::random_vector(n, seed), g0 = test::random_vector(n, seed + 1);
  std::vector<ReferenceAdam> ref;
  for (float x : p) ref.push_back(ReferenceAdam{x});
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  AdamParams a;
  a.lr = 1e-2;
  a.weight_decay = 1e-2;
  for (int t = 1; t <= 5; ++t) {
    a.step = t;
    auto g = test::random_vector(n, seed + 10 + uint64_t(t));
    cpu::adam_update(p.data(), m.data(), v.data(), g.data(), int64_t(n), a);
    for (size_t i = 0; i < n; ++i) ref[i].step(g[i], a);
  }
  std::vector<float> expect(n);
  for (size_t i = 0; i < n; ++i) expect[i] = float(ref[i].p);
  // float32 state vs double over 5 steps of size ~lr: rounding of the update only (~1e-7 relative).
  EXPECT_LT(test::rel_error(p, expect), 1e-6);
}

TEST(CpuAdam, FirstStepMovesEveryWeightByAboutTheLearningRate) {
  // With m = v = 0, the first bias-corrected step is lr * g / (|g| + eps): sign(g) * lr.
  std::vector<float> p{1.0f, -2.0f, 0.5f}, m(3, 0.0f), v(3, 0.0f), g{0.3f, -4.0f, 1e-3f};
  AdamParams a;
  a.lr = 0.1;
  cpu::adam_update(p.data(), m.data(), v.data(), g.data(), 3, a);
  EXPECT_NEAR(p[0], 0.9f, 1e-6);
  EXPECT_NEAR(p[1], -1.9f, 1e-6);
  EXPECT_NEAR(p[2], 0.4f, 1e-4);  // |g| = 1e-3 against eps = 1e-8: 1e-5 relative
}

TEST(CudaAdam, MatchesCpu) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const size_t n = 100003;  // not a multiple of any block size
  const auto p0 = test::random_vector(n, seed), g = test::random_vector(n, seed + 1);
  test::DeviceBuffer gp(*gpu, p0), gm(*gpu, std::vector<float>(n, 0.0f)), gv(*gpu, std::vector<float>(n, 0.0f)),
      gg(*gpu, g);
  auto cp = p0;
  std::vector<float> cm(n, 0.0f), cv(n, 0.0f);
  AdamParams a;
  a.weight_decay = 1e-4;
  for (int t = 1; t <= 3; ++t) {
    a.step = t;
    gpu->adam_update(gp.data(), gm.data(), gv.data(), gg.data(), int64_t(n), a);
    cpu->adam_update(cp.data(), cm.data(), cv.data(), g.data(), int64_t(n), a);
  }
  // The kernel does the CPU's float operations in the same order without FMA contraction, but
  // sqrtf and division may differ by an ulp on the device: 1e-6 relative.
  EXPECT_LT(test::rel_error(gp.host(), cp), 1e-6);
  EXPECT_LT(test::rel_error(gm.host(), cm), 1e-6);
  EXPECT_LT(test::rel_error(gv.host(), cv), 1e-6);
}

}  // namespace
}  // namespace cxr
