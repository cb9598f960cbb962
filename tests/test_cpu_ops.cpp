// CPU ops: forward against direct formulas, and every backward against central finite differences
// in double precision (the same templated kernels instantiated for double), kinks skipped.
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/ops_cpu.h"
#include "test_util.h"

namespace cxr {
namespace {

using cpu::View;
using Vec = std::vector<double>;

Vec random_doubles(size_t n, std::mt19937_64& rng, double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> d(lo, hi);
  Vec v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Compares `analytic` (d loss / d x) with central differences of loss() at up to `max_checks`
// elements of x. An element where the one-sided slopes disagree sits on a kink (ReLU at 0, a max-pool
// tie) within h and is skipped; at most a tenth may be. Tolerance: with h = 1e-5 in double, the
// truncation error is O(h^2 * f''') ~ 1e-10 and rounding ~ 1e-16/h ~ 1e-11 relative, so 1e-6
// norm-wise leaves three orders of margin while any indexing or formula error is O(1).
void check_gradient(Vec& x, const Vec& analytic, const std::function<double()>& loss, const char* what,
                    size_t max_checks = 300) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  const double h = 1e-5;
  std::mt19937_64 pick(x.size());
  double num = 0, den = 0;
  size_t checked = 0, skipped = 0;
  const size_t stride = std::max<size_t>(1, x.size() / max_checks);
  for (size_t start = pick() % stride, i = start; i < x.size(); i += stride) {
    const double orig = x[i];
    const double f0 = loss();
    x[i] = orig + h;
    const double fp = loss();
    x[i] = orig - h;
    const double fm = loss();
    x[i] = orig;
    const double right = (fp - f0) / h, left = (f0 - fm) / h;
    if (std::abs(right - left) > 1e-3 * (std::abs(right) + std::abs(left)) + 1e-7) {
      ++skipped;
      continue;
    }
    const double fd = (fp - fm) / (2 * h);
    num += (fd - analytic[i]) * (fd - analytic[i]);
    den += fd * fd;
    ++checked;
  }
  ASSERT_GT(checked, 0u) << what;
  EXPECT_LE(skipped, checked / 10 + 1) << what << ": too many kinks skipped";
  EXPECT_LT(std::sqrt(num / std::max(den, 1e-300)), 1e-6)
      << what << ": finite differences disagree (" << checked << " elements checked)";
}

// ---- convolution ------------------------------------------------------------------------------

struct ConvCase {
  int64_t n, c, h, w, k, r, stride, pad;
};
void PrintTo(const ConvCase& p, std::ostream* os) {
  *os << "x(" << p.n << "," << p.c << "," << p.h << "," << p.w << ") k" << p.k << " " << p.r << "x" << p.r
      << "/" << p.stride << " pad " << p.pad;
}

class CpuConv : public ::testing::TestWithParam<ConvCase> {};

TEST_P(CpuConv, ForwardMatchesDirectSum) {
  const ConvCase p = GetParam();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const ConvGeom g{p.r, p.stride, p.pad};
  const Shape xs{p.n, p.c, p.h, p.w}, ws{p.k, p.c, p.r, p.r}, ys{p.n, p.k, g.out_size(p.h), g.out_size(p.w)};
  Vec x = random_doubles(size_t(xs.numel()), rng), w = random_doubles(size_t(ws.numel()), rng);
  Vec y(size_t(ys.numel()), std::nan("")), col(size_t(std::max<int64_t>(1, cpu::conv2d_col_elems(ys, xs, g))));
  cpu::conv2d_forward(View<double>(y.data(), ys), View<double>(x.data(), xs), w.data(), ws, g, col.data());
  double err = 0;
  for (int64_t n = 0; n < ys.n; ++n)
    for (int64_t k = 0; k < ys.c; ++k)
      for (int64_t i = 0; i < ys.h; ++i)
        for (int64_t j = 0; j < ys.w; ++j) {
          double s = 0;
          for (int64_t c = 0; c < p.c; ++c)
            for (int64_t r = 0; r < p.r; ++r)
              for (int64_t q = 0; q < p.r; ++q) {
                const int64_t ih = i * p.stride - p.pad + r, iw = j * p.stride - p.pad + q;
                if (ih >= 0 && ih < p.h && iw >= 0 && iw < p.w)
                  s += x[size_t(((n * p.c + c) * p.h + ih) * p.w + iw)] * w[size_t(((k * p.c + c) * p.r + r) * p.r + q)];
              }
          err = std::max(err, std::abs(s - y[size_t(((n * ys.c + k) * ys.h + i) * ys.w + j)]));
        }
  EXPECT_LT(err, 1e-12);  // double GEMM vs direct sum of < 1000 terms of size ~1: rounding only
}

TEST_P(CpuConv, BackwardMatchesFiniteDifferences) {
  const ConvCase p = GetParam();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const ConvGeom g{p.r, p.stride, p.pad};
  const Shape xs{p.n, p.c, p.h, p.w}, ws{p.k, p.c, p.r, p.r}, ys{p.n, p.k, g.out_size(p.h), g.out_size(p.w)};
  Vec x = random_doubles(size_t(xs.numel()), rng), w = random_doubles(size_t(ws.numel()), rng);
  const Vec r = random_doubles(size_t(ys.numel()), rng);
  Vec y(size_t(ys.numel())), col(size_t(std::max<int64_t>(1, cpu::conv2d_col_elems(ys, xs, g))));
  auto loss = [&] {
    cpu::conv2d_forward(View<double>(y.data(), ys), View<double>(x.data(), xs), w.data(), ws, g, col.data());
    return dot(r, y);
  };
  Vec dx(x.size(), std::nan("")), dw(w.size(), std::nan(""));
  Vec rr = r;
  cpu::conv2d_backward_data(View<double>(dx.data(), xs), GradMode::Overwrite, View<double>(rr.data(), ys), w.data(),
                            ws, g, col.data());
  cpu::conv2d_backward_filter(dw.data(), GradMode::Overwrite, ws, View<double>(rr.data(), ys),
                              View<double>(x.data(), xs), g, col.data());
  check_gradient(x, dx, loss, "conv dx");
  check_gradient(w, dw, loss, "conv dw");

  // Accumulate adds exactly the Overwrite result to what was there.
  Vec base = random_doubles(x.size(), rng), acc = base;
  cpu::conv2d_backward_data(View<double>(acc.data(), xs), GradMode::Accumulate, View<double>(rr.data(), ys),
                            w.data(), ws, g, col.data());
  Vec wbase = random_doubles(w.size(), rng), wacc = wbase;
  cpu::conv2d_backward_filter(wacc.data(), GradMode::Accumulate, ws, View<double>(rr.data(), ys),
                              View<double>(x.data(), xs), g, col.data());
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(acc[i] - base[i], dx[i], 1e-12) << "dx accumulate at " << i;
  for (size_t i = 0; i < w.size(); ++i) ASSERT_NEAR(wacc[i] - wbase[i], dw[i], 1e-12) << "dw accumulate at " << i;
}

INSTANTIATE_TEST_SUITE_P(DenseNetShapes, CpuConv,
                         ::testing::Values(ConvCase{2, 3, 11, 10, 4, 7, 2, 3},   // stem 7x7/2 pad 3
                                           ConvCase{2, 5, 6, 7, 3, 3, 1, 1},     // 3x3 'same'
                                           ConvCase{3, 6, 5, 4, 4, 1, 1, 0},     // 1x1 bottleneck
                                           ConvCase{1, 2, 9, 9, 3, 3, 2, 0},     // strided, unpadded
                                           // Image grouping (kernels/cpu/conv_cpu.cpp): 24x24 planes
                                           // run image by image; 10x10 ones six to a GEMM, so 7
                                           // images make a group and a tail of one.
                                           ConvCase{2, 3, 24, 24, 4, 3, 1, 1},   // 3x3, per image
                                           ConvCase{2, 4, 24, 24, 3, 1, 1, 0},   // 1x1, per image
                                           ConvCase{7, 3, 10, 10, 4, 3, 1, 1},   // 3x3, group + tail
                                           ConvCase{7, 5, 10, 10, 3, 1, 1, 0},   // 1x1, group + tail
                                           ConvCase{3, 2, 6, 6, 3, 3, 1, 0}));   // stride 1, unpadded

TEST(CpuConvGrouping, TheGroupingCasesAboveExerciseWhatTheyClaim) {
  EXPECT_EQ(cpu::conv2d_images_per_gemm(2, 24 * 24), 1);  // per image
  EXPECT_EQ(cpu::conv2d_images_per_gemm(7, 10 * 10), 6);  // a group of 6 and a tail of 1
  EXPECT_EQ(cpu::conv2d_images_per_gemm(3, 4 * 4), 3);    // capped at the batch
}

TEST(CpuConvViews, ChannelSlicesOfABlockBufferMatchPackedTensors) {
  // Layer reads channels [0, 3) and writes [3, 5) of a (2, 6, 5, 5) buffer.
  std::mt19937_64 rng(test::fresh_seed());
  const Shape bs{2, 6, 5, 5}, xs{2, 3, 5, 5}, ys{2, 2, 5, 5}, ws{2, 3, 3, 3};
  const ConvGeom g{3, 1, 1};
  Vec block = random_doubles(size_t(bs.numel()), rng), w = random_doubles(size_t(ws.numel()), rng);
  Vec packed_x(size_t(xs.numel()));
  for (int64_t n = 0; n < 2; ++n)
    std::copy_n(block.begin() + n * 150, 75, packed_x.begin() + n * 75);
  Vec col(size_t(cpu::conv2d_col_elems(ys, xs, g))), packed_y(size_t(ys.numel()));
  cpu::conv2d_forward(View<double>(packed_y.data(), ys), View<double>(packed_x.data(), xs), w.data(), ws, g, col.data());
  const View<double> buf(block.data(), bs);
  cpu::conv2d_forward(buf.channels(3, 5), buf.channels(0, 3), w.data(), ws, g, col.data());
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t i = 0; i < 50; ++i) ASSERT_EQ(block[size_t(n * 150 + 75 + i)], packed_y[size_t(n * 50 + i)]);
}

// ---- batch normalisation -------------------------------------------------------------------

// BN over channels [1, 4) of a (3, 5, 4, 3) buffer (a strided view), in double, with
// loss = <r, bn(x)> (or <r, relu(bn(x))>) computed from fresh batch statistics.
struct BnCase {
  static constexpr int64_t C = 3, HW = 12;
  const Shape full{3, 5, 4, 3};
  std::mt19937_64 rng;
  Vec buf, gamma, beta, ybuf, mean = Vec(C), invstd = Vec(C), r;
  View<double> xv, yv;
  explicit BnCase(uint64_t seed) : rng(seed) {
    buf = random_doubles(size_t(full.numel()), rng, -2, 3);
    gamma = random_doubles(C, rng, 0.5, 1.5);
    beta = random_doubles(C, rng, -0.5, 0.5);
    ybuf.assign(size_t(full.numel()), 0.0);
    r = random_doubles(size_t(full.numel()), rng);
    xv = View<double>(buf.data(), full).channels(1, 4);
    yv = View<double>(ybuf.data(), full).channels(1, 4);
  }
  double loss(bool relu) {
    cpu::batchnorm_stats<double>(mean.data(), invstd.data(), nullptr, nullptr, xv, 1e-3, 0.99, 1.0);
    cpu::batchnorm_apply(yv, xv, gamma.data(), beta.data(), mean.data(), invstd.data(), relu);
    double s = 0;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < HW; ++i) s += r[size_t((n * C + c) * HW + i)] * yv.plane(n, c)[i];
    return s;
  }
  // d loss / d (BN or ReLU output), packed (N, C, H, W).
  Vec dy() const { return Vec(r.begin(), r.begin() + long(3 * C * HW)); }
  View<double> slice(Vec& v) const { return View<double>(v.data(), full).channels(1, 4); }
};

TEST(CpuBatchNorm, TrainingBackwardMatchesFiniteDifferences) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  BnCase t(seed);
  auto loss = [&] { return t.loss(false); };
  loss();
  Vec dy = t.dy(), dxbuf(t.buf.size(), 0.0), dgamma(BnCase::C), dbeta(BnCase::C);
  cpu::batchnorm_backward(t.slice(dxbuf), GradMode::Overwrite, dgamma.data(), dbeta.data(),
                          View<double>(dy.data(), t.xv.shape), t.xv, t.gamma.data(), t.mean.data(), t.invstd.data());
  check_gradient(t.buf, dxbuf, loss, "bn dx");  // untouched channels: gradient 0 both ways
  check_gradient(t.gamma, dgamma, loss, "bn dgamma");
  check_gradient(t.beta, dbeta, loss, "bn dbeta");
}

TEST(CpuBatchNorm, FusedReluBackwardMatchesFiniteDifferences) {
  // loss = <r, relu(bn(x))> through batchnorm_apply(relu = true); the fused backward recomputes the
  // mask from x. Kinks (outputs within h of 0) are skipped by check_gradient.
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  BnCase t(seed);
  auto loss = [&] { return t.loss(true); };
  loss();
  size_t cut = 0;
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t c = 0; c < BnCase::C; ++c)
      for (int64_t i = 0; i < BnCase::HW; ++i) cut += t.yv.plane(n, c)[i] == 0.0;
  ASSERT_GT(cut, 5u) << "the ReLU must cut somewhere for the mask to be tested";
  Vec dy = t.dy(), dxbuf(t.buf.size(), 0.0), dgamma(BnCase::C), dbeta(BnCase::C);
  const View<double> dyv(dy.data(), t.xv.shape);
  cpu::batchnorm_relu_backward(t.slice(dxbuf), GradMode::Overwrite, dgamma.data(), dbeta.data(), dyv, t.xv,
                               t.gamma.data(), t.beta.data(), t.mean.data(), t.invstd.data());
  check_gradient(t.buf, dxbuf, loss, "bn-relu dx");
  check_gradient(t.gamma, dgamma, loss, "bn-relu dgamma");
  check_gradient(t.beta, dbeta, loss, "bn-relu dbeta");
  // Equal to relu_backward on the kept output followed by the plain backward (the same doubles in
  // the same order: exact).
  Vec dx2buf(t.buf.size(), 0.0), dgamma2(BnCase::C), dbeta2(BnCase::C);
  cpu::relu_backward(dyv, dyv, t.yv);
  cpu::batchnorm_backward(t.slice(dx2buf), GradMode::Overwrite, dgamma2.data(), dbeta2.data(), dyv, t.xv,
                          t.gamma.data(), t.mean.data(), t.invstd.data());
  EXPECT_EQ(dxbuf, dx2buf);
  EXPECT_EQ(dgamma, dgamma2);
  EXPECT_EQ(dbeta, dbeta2);
}

TEST(CpuBatchNorm, FrozenReluBackwardMatchesFiniteDifferences) {
  // loss = <r, relu(bn(x))> with frozen statistics (fixed mean/invstd, as inference's running ones):
  // the backward must be the derivative with the statistics held constant, accumulate into a strided
  // slice, and leave the channels outside the slice alone.
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  BnCase t(seed);
  Vec mean = random_doubles(BnCase::C, t.rng, -0.5, 0.5), invstd = random_doubles(BnCase::C, t.rng, 0.5, 2.0);
  auto loss = [&] {
    cpu::batchnorm_apply(t.yv, t.xv, t.gamma.data(), t.beta.data(), mean.data(), invstd.data(), true);
    double s = 0;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t c = 0; c < BnCase::C; ++c)
        for (int64_t i = 0; i < BnCase::HW; ++i) s += t.r[size_t((n * BnCase::C + c) * BnCase::HW + i)] * t.yv.plane(n, c)[i];
    return s;
  };
  loss();
  size_t cut = 0;
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t c = 0; c < BnCase::C; ++c)
      for (int64_t i = 0; i < BnCase::HW; ++i) cut += t.yv.plane(n, c)[i] == 0.0;
  ASSERT_GT(cut, 5u) << "the ReLU must cut somewhere for the mask to be tested";
  Vec dy = t.dy(), dxbuf(t.buf.size(), 0.0);
  const View<double> dyv(dy.data(), t.xv.shape);
  cpu::batchnorm_relu_backward_frozen(t.slice(dxbuf), GradMode::Overwrite, dyv, t.xv, t.gamma.data(), t.beta.data(),
                                      mean.data(), invstd.data());
  check_gradient(t.buf, dxbuf, loss, "frozen bn-relu dx");  // channels outside the slice: 0 both ways
  // Accumulate adds the same values onto what is there, and only inside the slice.
  Vec acc(t.buf.size(), 0.25);
  cpu::batchnorm_relu_backward_frozen(t.slice(acc), GradMode::Accumulate, dyv, t.xv, t.gamma.data(), t.beta.data(),
                                      mean.data(), invstd.data());
  for (size_t i = 0; i < acc.size(); ++i) EXPECT_EQ(acc[i], dxbuf[i] + 0.25) << i;
}

TEST(CpuBatchNorm, StatisticsAndKerasRunningUpdate) {
  std::mt19937_64 rng(test::fresh_seed());
  const Shape s{4, 2, 3, 3};
  Vec x = random_doubles(size_t(s.numel()), rng, -1, 2);
  Vec mean(2), invstd(2), rm{0.5, -0.25}, rv{1.5, 0.75};
  const double n = 36, corr = n / (n - 1);
  cpu::batchnorm_stats<double>(mean.data(), invstd.data(), rm.data(), rv.data(), View<double>(x.data(), s), 1.001e-5,
                               0.99, corr);
  for (int64_t c = 0; c < 2; ++c) {
    double m = 0, v = 0;
    for (int64_t b = 0; b < 4; ++b)
      for (int64_t i = 0; i < 9; ++i) m += x[size_t((b * 2 + c) * 9 + i)];
    m /= n;
    for (int64_t b = 0; b < 4; ++b)
      for (int64_t i = 0; i < 9; ++i) v += std::pow(x[size_t((b * 2 + c) * 9 + i)] - m, 2);
    v /= n;
    EXPECT_NEAR(mean[size_t(c)], m, 1e-14);
    EXPECT_NEAR(invstd[size_t(c)], 1 / std::sqrt(v + 1.001e-5), 1e-12);
    const double rm0 = c == 0 ? 0.5 : -0.25, rv0 = c == 0 ? 1.5 : 0.75;
    EXPECT_NEAR(rm[size_t(c)], 0.99 * rm0 + 0.01 * m, 1e-14);
    EXPECT_NEAR(rv[size_t(c)], 0.99 * rv0 + 0.01 * v * corr, 1e-14);
  }
}

TEST(CpuBatchNorm, RunningUpdateAloneMatchesTheFusedOne) {
  // batchnorm_running_update from (mean, invstd) recovers var = 1/invstd^2 - eps. In float, invstd
  // carries a relative rounding of 6e-8, so var (here ~1, far above eps) is off by ~1.2e-7 relative
  // and the running variance, which takes 1% of it, by far less than its own float rounding: 1e-6
  // relative leaves margin and still catches a missing correction factor (2.8%) or eps (1e-5).
  std::mt19937_64 rng(test::fresh_seed());
  const Shape s{4, 5, 3, 3};
  std::vector<float> x(size_t(s.numel()));
  std::uniform_real_distribution<float> u(-1, 2);
  for (auto& v : x) v = u(rng);
  std::vector<float> mean(5), invstd(5), rm_fused(5, 0.5f), rv_fused(5, 1.5f), rm(5, 0.5f), rv(5, 1.5f);
  const double n = 36, corr = n / (n - 1);
  cpu::batchnorm_stats<float>(mean.data(), invstd.data(), rm_fused.data(), rv_fused.data(), View<float>(x.data(), s),
                              1.001e-5, 0.9, corr);
  cpu::batchnorm_running_update<float>(rm.data(), rv.data(), mean.data(), invstd.data(), 5, 1.001e-5, 0.9, corr);
  for (size_t c = 0; c < 5; ++c) {
    // The fused update folds the double mean, the update alone its float rounding (off by up to
    // 6e-8 relative, of which 10% enters): the results may differ in the last float bit.
    EXPECT_NEAR(rm[c], rm_fused[c], 2.5e-7 * std::abs(rm_fused[c])) << "channel " << c;
    EXPECT_NEAR(rv[c], rv_fused[c], 1e-6 * rv_fused[c]) << "channel " << c;
  }
}

// ---- synchronised batch normalisation (batchnorm_backward_reduce / _apply) --------------------

// Images [n0, n1) of a view.
template <typename T>
View<T> images(const View<T>& v, int64_t n0, int64_t n1) {
  Shape s = v.shape;
  s.n = n1 - n0;
  return View<T>(v.data + n0 * v.batch_stride, s, v.batch_stride);
}

// x: channels [1, 4) of an (N, 5, 4, 3) buffer of T; dy: channels [0, 3) of an (N, 4, 4, 3) one;
// dx: channels [2, 5) of an (N, 6, 4, 3) one (three different batch strides and offsets).
template <typename T>
struct SyncBnCase {
  static constexpr int64_t C = 3, H = 4, W = 3, HW = H * W;
  const int64_t N;
  std::vector<T> xbuf, dybuf, gamma, beta, mean = std::vector<T>(C), invstd = std::vector<T>(C);
  View<T> x, dy;

  SyncBnCase(int64_t n, std::mt19937_64& rng) : N(n) {
    xbuf = cast(random_doubles(size_t(N * 5 * HW), rng, -2, 3));
    dybuf = cast(random_doubles(size_t(N * 4 * HW), rng));
    gamma = cast(random_doubles(C, rng, 0.5, 1.5));
    beta = cast(random_doubles(C, rng, -0.5, 0.5));
    x = View<T>(xbuf.data(), Shape{N, 5, H, W}).channels(1, 4);
    dy = View<T>(dybuf.data(), Shape{N, 4, H, W}).channels(0, 3);
    cpu::batchnorm_stats<T>(mean.data(), invstd.data(), nullptr, nullptr, x, 1e-3, 0.99, 1.0);
  }
  static std::vector<T> cast(const Vec& v) { return std::vector<T>(v.begin(), v.end()); }
  // A dx buffer: NaN (an unwritten element fails) for Overwrite, random values for Accumulate.
  std::vector<T> dx_buffer(GradMode mode, std::mt19937_64& rng) const {
    if (mode == GradMode::Overwrite) return std::vector<T>(size_t(N * 6 * HW), std::numeric_limits<T>::quiet_NaN());
    return cast(random_doubles(size_t(N * 6 * HW), rng));
  }
  View<T> dx(std::vector<T>& buf) const { return View<T>(buf.data(), Shape{N, 6, H, W}).channels(2, 5); }
  // dy' = dy where batchnorm_apply(relu) is positive: the mask from the apply itself.
  std::vector<T> masked_dy(bool relu) const {
    std::vector<T> ybuf(size_t(N * C * HW)), out(ybuf.size());
    const View<T> y(ybuf.data(), Shape{N, C, H, W});
    cpu::batchnorm_apply(y, x, gamma.data(), beta.data(), mean.data(), invstd.data(), true);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < HW; ++i)
          out[size_t((n * C + c) * HW + i)] = !relu || y.plane(n, c)[i] > T(0) ? dy.plane(n, c)[i] : T(0);
    return out;
  }
  double xhat(int64_t n, int64_t c, int64_t i) const {
    return (double(x.plane(n, c)[i]) - double(mean[size_t(c)])) * double(invstd[size_t(c)]);
  }
  void fused(const View<T>& dxv, GradMode mode, T* dgamma, T* dbeta, bool relu) const {
    if (relu)
      cpu::batchnorm_relu_backward(dxv, mode, dgamma, dbeta, dy, x, gamma.data(), beta.data(), mean.data(),
                                   invstd.data());
    else
      cpu::batchnorm_backward(dxv, mode, dgamma, dbeta, dy, x, gamma.data(), mean.data(), invstd.data());
  }
};

// Every element of dx `got` against `ref` (both views of buffers that started as `initial`) within
//   tol = |k| (delta_dy + |xhat| delta_dyx) / count          the two runs' sums differ by delta_*
//       + 8 u_double |k| (|dy'| + |mdy| + |xhat| |mdyx|)    double arithmetic of k (dy' - mdy - xhat mdyx)
//       + 2 u_T (|v| + |ref|)                                rounding v, then d + v, to T in each run
// (k = gamma invstd, v = ref - initial the op's contribution, u = unit roundoff); tol = 0 demands
// equality. Elements outside the views must be left as they were.
template <typename T>
void expect_dx_within(const std::vector<T>& got, const std::vector<T>& ref, const std::vector<T>& initial,
                      const SyncBnCase<T>& t, bool relu, GradMode mode, const std::vector<double>& delta_dy,
                      const std::vector<double>& delta_dyx, const std::vector<T>& sum_dy,
                      const std::vector<T>& sum_dyx, bool exact, const std::string& what) {
  const double ud = std::numeric_limits<double>::epsilon() / 2, ut = std::numeric_limits<T>::epsilon() / 2;
  const double count = double(t.N * t.HW);
  const std::vector<T> g = t.masked_dy(relu);
  std::vector<T> gbuf = got, rbuf = ref, ibuf = initial;  // views hold mutable pointers
  const View<T> gv = t.dx(gbuf), rv = t.dx(rbuf), iv = t.dx(ibuf);
  size_t bad = 0;
  for (int64_t n = 0; n < t.N; ++n)
    for (int64_t c = 0; c < t.C; ++c) {
      const double k = std::abs(double(t.gamma[size_t(c)]) * double(t.invstd[size_t(c)]));
      const double mdy = std::abs(double(sum_dy[size_t(c)])) / count, mdyx = std::abs(double(sum_dyx[size_t(c)])) / count;
      for (int64_t i = 0; i < t.HW; ++i) {
        const double a = gv.plane(n, c)[i], r = rv.plane(n, c)[i], xh = std::abs(t.xhat(n, c, i));
        const double d0 = mode == GradMode::Accumulate ? double(iv.plane(n, c)[i]) : 0.0;
        const double tol = exact ? 0.0
                                 : k * (delta_dy[size_t(c)] + xh * delta_dyx[size_t(c)]) / count +
                                       8 * ud * k * (std::abs(double(g[size_t((n * t.C + c) * t.HW + i)])) + mdy + xh * mdyx) +
                                       2 * ut * (std::abs(r - d0) + std::abs(r));
        if (!(std::abs(a - r) <= tol) && bad++ < 5)
          ADD_FAILURE() << what << ": dx(" << n << "," << c << "," << i << ") " << a << " vs " << r << ", tolerance " << tol;
      }
    }
  EXPECT_EQ(bad, 0u) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    const int64_t r = int64_t(i) % (6 * t.HW);
    if (r >= 2 * t.HW && r < 5 * t.HW) continue;  // inside the view
    const bool same = (std::isnan(double(got[i])) && std::isnan(double(initial[i]))) || got[i] == initial[i];
    EXPECT_TRUE(same) << what << ": element " << i << " outside the dx view was written";
  }
}

// Reduce, then apply with this batch's count, is the fused backward: the same sums (the same code
// adds the same terms in the same order, so dgamma/dbeta are equal), and dx equal in double (the
// same doubles in, the same arithmetic) or, in float, off only by the sums' rounding to float before
// the apply reads them (delta = u_float |sum|), which expect_dx_within turns into a few ulps.
template <typename T>
void check_reduce_then_apply_is_fused(uint64_t seed) {
  std::mt19937_64 rng(seed);
  const SyncBnCase<T> t(3, rng);
  constexpr int64_t C = SyncBnCase<T>::C;
  const bool exact = std::is_same_v<T, double>;
  const double count = double(t.N * t.HW), ut = std::numeric_limits<T>::epsilon() / 2;
  {
    size_t cut = 0;
    for (T v : t.masked_dy(true)) cut += v == T(0);
    ASSERT_GT(cut, 10u) << "the ReLU must cut somewhere for the mask to be tested";
  }
  for (bool relu : {false, true})
    for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate}) {
      const std::string what = std::string(exact ? "double" : "float") + (relu ? " relu" : "") +
                               (mode == GradMode::Accumulate ? " (+=)" : " (=)");
      const std::vector<T> initial = t.dx_buffer(mode, rng);
      std::vector<T> fdx = initial, sdx = initial, dgamma(C), dbeta(C), sum_dyx(C), sum_dy(C);
      t.fused(t.dx(fdx), mode, dgamma.data(), dbeta.data(), relu);
      cpu::batchnorm_backward_reduce(sum_dyx.data(), sum_dy.data(), t.dy, t.x, t.gamma.data(), t.beta.data(),
                                     t.mean.data(), t.invstd.data(), relu);
      EXPECT_EQ(sum_dyx, dgamma) << what;
      EXPECT_EQ(sum_dy, dbeta) << what;
      cpu::batchnorm_backward_apply(t.dx(sdx), mode, t.dy, t.x, t.gamma.data(), t.beta.data(), t.mean.data(),
                                    t.invstd.data(), sum_dyx.data(), sum_dy.data(), count, relu);
      std::vector<double> delta_dy(C), delta_dyx(C);
      for (size_t c = 0; c < size_t(C); ++c) {
        delta_dy[c] = ut * std::abs(double(sum_dy[c]));
        delta_dyx[c] = ut * std::abs(double(sum_dyx[c]));
      }
      expect_dx_within(sdx, fdx, initial, t, relu, mode, delta_dy, delta_dyx, sum_dy, sum_dyx, exact, what);
      // dx may alias dy: apply in place on a copy of dy gives the same values.
      if (mode == GradMode::Overwrite) {
        std::vector<T> alias = t.dybuf;
        const View<T> av = View<T>(alias.data(), Shape{t.N, 4, t.H, t.W}).channels(0, 3);
        cpu::batchnorm_backward_apply(av, mode, av, t.x, t.gamma.data(), t.beta.data(), t.mean.data(),
                                      t.invstd.data(), sum_dyx.data(), sum_dy.data(), count, relu);
        for (int64_t n = 0; n < t.N; ++n)
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < t.HW; ++i)
              ASSERT_EQ(av.plane(n, c)[i], t.dx(sdx).plane(n, c)[i]) << what << " in place, " << n << "," << c << "," << i;
      }
    }
}

TEST(CpuBatchNorm, SyncReduceThenApplyIsTheFusedBackward) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  check_reduce_then_apply_is_fused<double>(seed);
  check_reduce_then_apply_is_fused<float>(seed);
}

// The sync-BN identity: a batch of 4 images split in two halves (two processes), each reducing its
// share, the sums added (the all-reduce), each applying with the global count, gives the backward
// of the whole batch. Only the order of the additions differs: per channel the sums differ by at
// most (4 u_T + 4 n u_double) S, S the sum of the terms' magnitudes over n = N*H*W values (each half
// rounded to T, their sum rounded, the whole rounded: 3 u_T S; any order of n double additions:
// n u_double S; doubled), and dx by what expect_dx_within derives from that.
template <typename T>
void check_sync_identity(uint64_t seed) {
  std::mt19937_64 rng(seed);
  const SyncBnCase<T> t(4, rng);  // statistics over all 4 images, as a synchronised forward has them
  constexpr int64_t C = SyncBnCase<T>::C;
  const double ud = std::numeric_limits<double>::epsilon() / 2, ut = std::numeric_limits<T>::epsilon() / 2;
  const double count = double(t.N * t.HW);
  for (bool relu : {false, true})
    for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate}) {
      const std::string what = std::string(std::is_same_v<T, double> ? "double" : "float") + (relu ? " relu" : "") +
                               (mode == GradMode::Accumulate ? " (+=)" : " (=)");
      const std::vector<T> initial = t.dx_buffer(mode, rng);
      std::vector<T> fdx = initial, sdx = initial, dgamma(C), dbeta(C);
      t.fused(t.dx(fdx), mode, dgamma.data(), dbeta.data(), relu);
      // Per half (process): its sums; then the all-reduce.
      std::vector<T> sum_dyx(C, T(0)), sum_dy(C, T(0));
      for (int64_t half = 0; half < 2; ++half) {
        std::vector<T> hdyx(C), hdy(C);
        cpu::batchnorm_backward_reduce(hdyx.data(), hdy.data(), images(t.dy, 2 * half, 2 * half + 2),
                                       images(t.x, 2 * half, 2 * half + 2), t.gamma.data(), t.beta.data(),
                                       t.mean.data(), t.invstd.data(), relu);
        for (size_t c = 0; c < size_t(C); ++c) {
          sum_dyx[c] += hdyx[c];
          sum_dy[c] += hdy[c];
        }
      }
      for (int64_t half = 0; half < 2; ++half)
        cpu::batchnorm_backward_apply(images(t.dx(sdx), 2 * half, 2 * half + 2), mode,
                                      images(t.dy, 2 * half, 2 * half + 2), images(t.x, 2 * half, 2 * half + 2),
                                      t.gamma.data(), t.beta.data(), t.mean.data(), t.invstd.data(), sum_dyx.data(),
                                      sum_dy.data(), count, relu);
      // S per channel, and the sums' bounds.
      const std::vector<T> g = t.masked_dy(relu);
      std::vector<double> delta_dy(C), delta_dyx(C);
      for (int64_t c = 0; c < C; ++c) {
        double s_dy = 0, s_dyx = 0;
        for (int64_t n = 0; n < t.N; ++n)
          for (int64_t i = 0; i < t.HW; ++i) {
            const double gi = std::abs(double(g[size_t((n * C + c) * t.HW + i)]));
            s_dy += gi;
            s_dyx += gi * std::abs(t.xhat(n, c, i));
          }
        const double f = 4 * ut + 4 * count * ud;
        delta_dy[size_t(c)] = f * s_dy;
        delta_dyx[size_t(c)] = f * s_dyx;
        EXPECT_NEAR(double(sum_dyx[size_t(c)]), double(dgamma[size_t(c)]), delta_dyx[size_t(c)]) << what << " channel " << c;
        EXPECT_NEAR(double(sum_dy[size_t(c)]), double(dbeta[size_t(c)]), delta_dy[size_t(c)]) << what << " channel " << c;
      }
      expect_dx_within(sdx, fdx, initial, t, relu, mode, delta_dy, delta_dyx, sum_dy, sum_dyx, false, what);
    }
}

TEST(CpuBatchNorm, SyncTwoHalvesWithSummedSumsAreTheWholeBatchBackward) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  check_sync_identity<double>(seed);
  check_sync_identity<float>(seed);
}

// ---- ReLU, pooling ---------------------------------------------------------------------------

TEST(CpuRelu, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(test::fresh_seed());
  const Shape s{2, 3, 4, 5};
  Vec x = random_doubles(size_t(s.numel()), rng), y(x.size()), r = random_doubles(x.size(), rng);
  auto loss = [&] {
    cpu::relu_forward(View<double>(y.data(), s), View<double>(x.data(), s));
    return dot(r, y);
  };
  loss();
  Vec dx(x.size());
  cpu::relu_backward(View<double>(dx.data(), s), View<double>(r.data(), s), View<double>(y.data(), s));
  check_gradient(x, dx, loss, "relu dx");
}

TEST(CpuPool, MaxPoolForwardAndBackward) {
  std::mt19937_64 rng(test::fresh_seed());
  const PoolGeom g{3, 2, 1};
  const Shape xs{2, 3, 9, 8}, ys{2, 3, g.out_size(9), g.out_size(8)};
  Vec x = random_doubles(size_t(xs.numel()), rng), y(size_t(ys.numel())), r = random_doubles(y.size(), rng);
  auto loss = [&] {
    cpu::maxpool_forward(View<double>(y.data(), ys), View<double>(x.data(), xs), g);
    return dot(r, y);
  };
  loss();
  // Forward: each output is the max over its in-bounds window.
  for (int64_t p = 0; p < ys.h; ++p)
    for (int64_t q = 0; q < ys.w; ++q) {
      double m = -1e300;
      for (int64_t i = std::max<int64_t>(0, 2 * p - 1); i <= std::min<int64_t>(8, 2 * p + 1); ++i)
        for (int64_t j = std::max<int64_t>(0, 2 * q - 1); j <= std::min<int64_t>(7, 2 * q + 1); ++j)
          m = std::max(m, x[size_t(i * 8 + j)]);
      ASSERT_EQ(y[size_t(p * ys.w + q)], m);
    }
  Vec dx(x.size());
  cpu::maxpool_backward(View<double>(dx.data(), xs), View<double>(r.data(), ys), View<double>(x.data(), xs), g);
  check_gradient(x, dx, loss, "maxpool dx");
}

TEST(CpuPool, AvgPoolOddSizesFloorAndBackward) {
  std::mt19937_64 rng(test::fresh_seed());
  const PoolGeom g{2, 2, 0};
  const Shape xs{2, 2, 9, 7}, ys{2, 2, 4, 3};
  ASSERT_EQ(g.out_size(9), 4);
  Vec x = random_doubles(size_t(xs.numel()), rng), y(size_t(ys.numel())), r = random_doubles(y.size(), rng);
  auto loss = [&] {
    cpu::avgpool_forward(View<double>(y.data(), ys), View<double>(x.data(), xs), g);
    return dot(r, y);
  };
  loss();
  EXPECT_NEAR(y[0], (x[0] + x[1] + x[7] + x[8]) / 4, 1e-15);
  Vec dx(x.size(), std::nan(""));
  cpu::avgpool_backward(View<double>(dx.data(), xs), View<double>(r.data(), ys), g);
  check_gradient(x, dx, loss, "avgpool dx");
  EXPECT_EQ(dx[size_t(8 * 7 + 6)], 0.0);  // last row/column: no window covers it
}

TEST(CpuPool, GlobalAveragePool) {
  std::mt19937_64 rng(test::fresh_seed());
  const Shape xs{3, 4, 5, 2}, ys{3, 4, 1, 1};
  Vec x = random_doubles(size_t(xs.numel()), rng), y(size_t(ys.numel())), r = random_doubles(y.size(), rng);
  auto loss = [&] {
    cpu::global_avgpool_forward(View<double>(y.data(), ys), View<double>(x.data(), xs));
    return dot(r, y);
  };
  loss();
  Vec dx(x.size());
  cpu::global_avgpool_backward(View<double>(dx.data(), xs), View<double>(r.data(), ys));
  check_gradient(x, dx, loss, "global avgpool dx");
}

// ---- dense layer and head ------------------------------------------------------------------

TEST(CpuDense, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(test::fresh_seed());
  const int64_t N = 3, IN = 7, OUT = 5;
  Vec x = random_doubles(N * IN, rng), k = random_doubles(IN * OUT, rng), b = random_doubles(OUT, rng);
  Vec y(N * OUT), r = random_doubles(N * OUT, rng);
  auto loss = [&] {
    cpu::dense_forward(y.data(), x.data(), k.data(), b.data(), N, IN, OUT);
    return dot(r, y);
  };
  loss();
  EXPECT_NEAR(y[OUT + 2], b[2] + [&] { double s = 0; for (int i = 0; i < IN; ++i) s += x[IN + i] * k[i * OUT + 2]; return s; }(), 1e-14);
  Vec dx(x.size()), dk(k.size()), db(b.size());
  cpu::dense_backward(dx.data(), dk.data(), db.data(), r.data(), x.data(), k.data(), N, IN, OUT);
  check_gradient(x, dx, loss, "dense dx");
  check_gradient(k, dk, loss, "dense dkernel");
  check_gradient(b, db, loss, "dense dbias");
}

TEST(CpuHead, WeightedBceClosedFormGradientAndStability) {
  std::mt19937_64 rng(test::fresh_seed());
  const int64_t N = 4, K = 3;
  Vec z = random_doubles(N * K, rng, -4, 4), wp{0.9, 0.7, 0.2}, wn{0.1, 0.3, 0.8};
  Vec y{1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0}, dz(N * K);
  double l = 0;
  auto loss = [&] {
    Vec scratch(N * K);
    cpu::weighted_bce(&l, scratch.data(), z.data(), y.data(), wp.data(), wn.data(), N, K);
    return l;
  };
  cpu::weighted_bce(&l, dz.data(), z.data(), y.data(), wp.data(), wn.data(), N, K);
  double closed = 0;
  for (int64_t i = 0; i < N; ++i)
    for (int64_t k = 0; k < K; ++k) {
      const double s = 1 / (1 + std::exp(-z[size_t(i * K + k)])), t = y[size_t(i * K + k)];
      closed -= (wp[size_t(k)] * t * std::log(s) + wn[size_t(k)] * (1 - t) * std::log(1 - s)) / N;
    }
  EXPECT_NEAR(l, closed, 1e-12);
  check_gradient(z, dz, loss, "bce dz");
  // Logits of +-100: finite loss, gradient at its limits.
  Vec zz{100, -100, 100, -100}, yy{1, 0, 0, 1}, d(4), w1{1, 1, 1, 1}, w2{1, 1, 1, 1};
  cpu::weighted_bce(&l, d.data(), zz.data(), yy.data(), w1.data(), w2.data(), 1, 4);
  EXPECT_TRUE(std::isfinite(l));
  EXPECT_NEAR(l, 200.0, 1e-9);  // the two wrong ones cost 100 each
  EXPECT_NEAR(d[0], 0, 1e-12);
  EXPECT_NEAR(d[2], 1, 1e-12);
  EXPECT_NEAR(d[3], -1, 1e-12);
}

}  // namespace
}  // namespace cxr
