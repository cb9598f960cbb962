// Every op of the backend at DenseNet121 shapes (batch 8, 128x128 input: block 1 runs at 32x32), on
// the CPU and, when one is present, on the GPU. Before timing, each case's output is checked against
// the CPU oracle in double (the same templated kernels instantiated for double); a case that disagrees
// is reported as an error instead of a time. Rates: GFLOP/s for convolutions (2 * MACs), GB/s for the
// memory-bound ops (bytes each op must read and write once).
#include <benchmark/benchmark.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "kernels/cpu/ops_cpu.h"

namespace {

using namespace cxr;

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double rel_error(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// A device buffer holding a host vector.
struct Buf {
  Backend& be;
  float* p;
  size_t n;
  Buf(Backend& b, const std::vector<float>& h) : be(b), p(static_cast<float*>(b.allocate(h.size() * 4))), n(h.size()) {
    be.copy_to_device(p, h.data(), n * 4);
  }
  explicit Buf(Backend& b, size_t count) : be(b), p(static_cast<float*>(b.allocate(count * 4))), n(count) {}
  ~Buf() { be.release(p); }
  std::vector<float> host() const {
    std::vector<float> h(n);
    be.copy_to_host(h.data(), p, n * 4);
    be.synchronize();
    return h;
  }
};

std::unique_ptr<Backend> backend_or_skip(benchmark::State& state, const std::string& device) {
  if (device == "cuda" && cuda_device_count() == 0) {
    state.SkipWithError(("no CUDA device: " + cuda_unavailable_reason()).c_str());
    return nullptr;
  }
  return make_backend(device);
}

// Times `run` (already validated) with the backend synchronised after each call.
void time_it(benchmark::State& state, Backend& be, const std::function<void()>& run, double work, bool flops) {
  run();
  be.synchronize();
  for (auto _ : state) {
    run();
    be.synchronize();
  }
  state.counters[flops ? "GFLOP/s" : "GB/s"] =
      benchmark::Counter(work * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

// Convolution forward: y (N, K, H, W) = conv(x (N, C, H, W), w (K, C, R, R)), stride 1, 'same'.
void conv_forward(benchmark::State& state, const std::string& device, int64_t C, int64_t K, int64_t R, int64_t H) {
  auto be = backend_or_skip(state, device);
  if (!be) return;
  const int64_t N = 8;
  const ConvGeom g{R, 1, R / 2};
  const Shape xs{N, C, H, H}, ys{N, K, H, H}, ws{K, C, R, R};
  const auto xh = random_floats(size_t(xs.numel()), 1), wh = random_floats(size_t(ws.numel()), 2);
  Buf x(*be, xh), w(*be, wh), y(*be, size_t(ys.numel()));
  const size_t wsb = be->conv2d_workspace_bytes(ys, xs, ws, g);
  Buf work(*be, wsb / 4 + 1);
  auto run = [&] {
    be->conv2d_forward(Tensor(y.p, ys, be->device()), Tensor(x.p, xs, be->device()), w.p, ws, g, {work.p, wsb});
  };
  run();
  // Oracle: the double instantiation.
  std::vector<double> xd(xh.begin(), xh.end()), wd(wh.begin(), wh.end()), yd(size_t(ys.numel()));
  std::vector<double> col(size_t(std::max<int64_t>(1, cpu::conv2d_col_elems(ys, xs, g))));
  cpu::conv2d_forward(cpu::View<double>(yd.data(), ys), cpu::View<double>(xd.data(), xs), wd.data(), ws, g, col.data());
  const double err = rel_error(y.host(), yd);
  if (err > 1e-5) {  // FP32 sums of up to C*R*R = 1152 terms: ~1e-6 expected
    state.SkipWithError(("disagrees with the oracle: " + std::to_string(err)).c_str());
    return;
  }
  time_it(state, *be, run, 2.0 * double(N * K * H * H * C * R * R), true);
}

// BN statistics + apply with ReLU over x (N, C, H, W): reads x twice, writes y once.
void bn_forward(benchmark::State& state, const std::string& device, int64_t C, int64_t H) {
  auto be = backend_or_skip(state, device);
  if (!be) return;
  const int64_t N = 8;
  const Shape s{N, C, H, H};
  const auto xh = random_floats(size_t(s.numel()), 3);
  Buf x(*be, xh), y(*be, xh.size()), gamma(*be, std::vector<float>(size_t(C), 1.5f)),
      beta(*be, std::vector<float>(size_t(C), 0.25f)), mean(*be, size_t(C)), invstd(*be, size_t(C));
  auto run = [&] {
    be->batchnorm_stats(mean.p, invstd.p, nullptr, nullptr, Tensor(x.p, s, be->device()), 1.001e-5, 0.99, 1.0);
    be->batchnorm_apply(Tensor(y.p, s, be->device()), Tensor(x.p, s, be->device()), gamma.p, beta.p, mean.p,
                        invstd.p, true);
  };
  run();
  std::vector<double> xd(xh.begin(), xh.end()), yd(xh.size()), md(static_cast<size_t>(C)), id(static_cast<size_t>(C));
  std::vector<double> gd(static_cast<size_t>(C), 1.5), bd(static_cast<size_t>(C), 0.25);
  cpu::batchnorm_stats<double>(md.data(), id.data(), nullptr, nullptr, cpu::View<double>(xd.data(), s), 1.001e-5, 0.99, 1.0);
  cpu::batchnorm_apply(cpu::View<double>(yd.data(), s), cpu::View<double>(xd.data(), s), gd.data(), bd.data(), md.data(),
                       id.data(), true);
  const double err = rel_error(y.host(), yd);
  if (err > 1e-6) {  // per-channel statistics in double; one float rounding per output
    state.SkipWithError(("disagrees with the oracle: " + std::to_string(err)).c_str());
    return;
  }
  time_it(state, *be, run, 3.0 * 4.0 * double(s.numel()), false);
}

// Adam over all 6,968,206 parameters: reads p, g, m, v and writes p, m, v.
void adam(benchmark::State& state, const std::string& device) {
  auto be = backend_or_skip(state, device);
  if (!be) return;
  const size_t n = 6968206;
  const auto ph = random_floats(n, 4), gh = random_floats(n, 5);
  Buf p(*be, ph), g(*be, gh), m(*be, std::vector<float>(n, 0.0f)), v(*be, std::vector<float>(n, 0.0f));
  AdamParams a;
  be->adam_update(p.p, m.p, v.p, g.p, int64_t(n), a);
  std::vector<double> pd(ph.begin(), ph.end()), gd(gh.begin(), gh.end()), md(n, 0.0), vd(n, 0.0);
  cpu::adam_update(pd.data(), md.data(), vd.data(), gd.data(), int64_t(n), a);
  const double err = rel_error(p.host(), pd);
  if (err > 1e-6) {  // one step: a few float roundings per element
    state.SkipWithError(("disagrees with the oracle: " + std::to_string(err)).c_str());
    return;
  }
  a.lr = 0;  // timing: keep the values where they are (step size 0), same memory traffic
  time_it(state, *be, [&] { be->adam_update(p.p, m.p, v.p, g.p, int64_t(n), a); }, 7.0 * 4.0 * double(n), false);
}

#define CXR_KERNEL_BENCHES(dev)                                                                             \
  BENCHMARK_CAPTURE(conv_forward, dev##_3x3_128to32_32px, std::string(#dev), 128, 32, 3, 32)->UseRealTime(); \
  BENCHMARK_CAPTURE(conv_forward, dev##_1x1_224to128_32px, std::string(#dev), 224, 128, 1, 32)->UseRealTime(); \
  BENCHMARK_CAPTURE(bn_forward, dev##_256ch_32px, std::string(#dev), 256, 32)->UseRealTime();               \
  BENCHMARK_CAPTURE(adam, dev##_densenet121, std::string(#dev))->UseRealTime();
CXR_KERNEL_BENCHES(cpu)
CXR_KERNEL_BENCHES(cuda)

}  // namespace
