// Every op of the backend and the Grad-CAM kernels at DenseNet121 shapes (batch 8, 128x128 input:
// block 1 runs at 32x32; the Grad-CAM case at 320x320's 10x10 map), on the CPU and, when one is
// present, on the GPU. Before timing, each case's output is checked against
// the CPU oracle in double (the same templated kernels instantiated for double); a case that disagrees
// is reported as an error instead of a time. Rates: GFLOP/s for convolutions (2 * MACs), GB/s for the
// memory-bound ops (bytes each op must read and write once).
#include <benchmark/benchmark.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "kernels/cpu/ops_cpu.h"
#include "kernels/cam_ops.h"

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
  const size_t wsb = be->conv2d_workspace_bytes(ys, ys.c * ys.h * ys.w, xs, xs.c * xs.h * xs.w, ws, g);
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

// Validates `out` against the oracle (relative, norm-wise) and times `run`; `tol` carries its reason
// at the call site.
void check_and_time(benchmark::State& state, Backend& be, const std::function<void()>& run, const Buf& out,
                    const std::vector<double>& oracle, double tol, double work, bool flops) {
  run();
  const double err = rel_error(out.host(), oracle);
  if (!(err <= tol)) {
    state.SkipWithError(("disagrees with the oracle: " + std::to_string(err)).c_str());
    return;
  }
  time_it(state, be, run, work, flops);
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Convolution backward data (dx = conv^T(dy)) and backward filter (dw = dy . col(x)^T), 'same', stride 1.
void conv_backward(benchmark::State& state, const std::string& device, int64_t C, int64_t K, int64_t R, int64_t H,
                   bool filter) {
  auto be = backend_or_skip(state, device);
  if (!be) return;
  const int64_t N = 8;
  const ConvGeom g{R, 1, R / 2};
  const Shape xs{N, C, H, H}, ys{N, K, H, H}, ws{K, C, R, R};
  const auto xh = random_floats(size_t(xs.numel()), 11), wh = random_floats(size_t(ws.numel()), 12),
             dyh = random_floats(size_t(ys.numel()), 13);
  Buf x(*be, xh), w(*be, wh), dy(*be, dyh), dx(*be, size_t(xs.numel())), dw(*be, size_t(ws.numel()));
  const size_t wsb = be->conv2d_workspace_bytes(ys, ys.c * ys.h * ys.w, xs, xs.c * xs.h * xs.w, ws, g);
  Buf work(*be, wsb / 4 + 1);
  const Device d = be->device();
  auto run = [&] {
    if (filter)
      be->conv2d_backward_filter(dw.p, GradMode::Overwrite, ws, Tensor(dy.p, ys, d), Tensor(x.p, xs, d), g, {work.p, wsb});
    else
      be->conv2d_backward_data(Tensor(dx.p, xs, d), GradMode::Overwrite, Tensor(dy.p, ys, d), w.p, ws, g, {work.p, wsb});
  };
  auto xd = to_double(xh), wd = to_double(wh), dyd = to_double(dyh);
  std::vector<double> out(size_t(filter ? ws.numel() : xs.numel()));
  std::vector<double> col(size_t(std::max<int64_t>(1, cpu::conv2d_col_elems(ys, xs, g))));
  if (filter)
    cpu::conv2d_backward_filter(out.data(), GradMode::Overwrite, ws, cpu::View<double>(dyd.data(), ys),
                                cpu::View<double>(xd.data(), xs), g, col.data());
  else
    cpu::conv2d_backward_data(cpu::View<double>(out.data(), xs), GradMode::Overwrite, cpu::View<double>(dyd.data(), ys),
                              wd.data(), ws, g, col.data());
  // FP32 sums of up to N*H*W = 8192 terms (filter) or K*R*R = 288 (data): ~1e-6 expected.
  check_and_time(state, *be, run, filter ? dw : dx, out, 1e-5, 2.0 * double(N * K * H * H * C * R * R), true);
}

// BN backward over (N, C, H, W): reads dy and x twice, writes dx once (counted: 3 tensors).
void bn_backward(benchmark::State& state, const std::string& device, int64_t C, int64_t H) {
  auto be = backend_or_skip(state, device);
  if (!be) return;
  const Shape s{8, C, H, H};
  const auto xh = random_floats(size_t(s.numel()), 21), dyh = random_floats(size_t(s.numel()), 22);
  const auto gh = random_floats(size_t(C), 23), mh = random_floats(size_t(C), 24);
  std::vector<float> ih(size_t(C), 1.25f);
  Buf x(*be, xh), dy(*be, dyh), dx(*be, xh.size()), gamma(*be, gh), mean(*be, mh), invstd(*be, ih),
      dgamma(*be, size_t(C)), dbeta(*be, size_t(C));
  const Device d = be->device();
  auto run = [&] {
    be->batchnorm_backward(Tensor(dx.p, s, d), GradMode::Overwrite, dgamma.p, dbeta.p, Tensor(dy.p, s, d),
                           Tensor(x.p, s, d), gamma.p, mean.p, invstd.p);
  };
  auto xd = to_double(xh), dyd = to_double(dyh), gd = to_double(gh), md = to_double(mh), id = to_double(ih);
  std::vector<double> dxd(xh.size()), dgd(static_cast<size_t>(C)), dbd(static_cast<size_t>(C));
  cpu::batchnorm_backward(cpu::View<double>(dxd.data(), s), GradMode::Overwrite, dgd.data(), dbd.data(),
                          cpu::View<double>(dyd.data(), s), cpu::View<double>(xd.data(), s), gd.data(), md.data(),
                          id.data());
  // Per-channel sums in double; each output a few float roundings: 1e-6.
  check_and_time(state, *be, run, dx, dxd, 1e-6, 3.0 * 4.0 * double(s.numel()), false);
}

// ReLU backward: reads dy and y, writes dx.
void relu_backward(benchmark::State& state, const std::string& device, int64_t C, int64_t H) {
  auto be = backend_or_skip(state, device);
  if (!be) return;
  const Shape s{8, C, H, H};
  const auto yh = random_floats(size_t(s.numel()), 31), dyh = random_floats(size_t(s.numel()), 32);
  Buf y(*be, yh), dy(*be, dyh), dx(*be, yh.size());
  const Device d = be->device();
  auto run = [&] { be->relu_backward(Tensor(dx.p, s, d), Tensor(dy.p, s, d), Tensor(y.p, s, d)); };
  auto yd = to_double(yh), dyd = to_double(dyh);
  std::vector<double> dxd(yh.size());
  cpu::relu_backward(cpu::View<double>(dxd.data(), s), cpu::View<double>(dyd.data(), s), cpu::View<double>(yd.data(), s));
  check_and_time(state, *be, run, dx, dxd, 0.0, 3.0 * 4.0 * double(s.numel()), false);  // a select: exact
}

// Pools forward / backward: reads the input once, writes the output once (max backward also reads x).
enum class PoolOp { MaxForward, MaxBackward, AvgForward, AvgBackward, GlobalForward };
void pool(benchmark::State& state, const std::string& device, PoolOp op, int64_t C, int64_t H) {
  auto be = backend_or_skip(state, device);
  if (!be) return;
  const bool is_max = op == PoolOp::MaxForward || op == PoolOp::MaxBackward;
  const PoolGeom g = is_max ? PoolGeom{3, 2, 1} : PoolGeom{2, 2, 0};
  const int64_t P = op == PoolOp::GlobalForward ? 1 : g.out_size(H);
  const Shape xs{8, C, H, H}, ys{8, C, P, P};
  const auto xh = random_floats(size_t(xs.numel()), 41), dyh = random_floats(size_t(ys.numel()), 42);
  Buf x(*be, xh), dy(*be, dyh), y(*be, size_t(ys.numel())), dx(*be, size_t(xs.numel()));
  const Device d = be->device();
  auto xd = to_double(xh), dyd = to_double(dyh);
  std::vector<double> yd(size_t(ys.numel())), dxd(size_t(xs.numel()));
  const cpu::View<double> vx(xd.data(), xs), vy(yd.data(), ys), vdy(dyd.data(), ys), vdx(dxd.data(), xs);
  std::function<void()> run;
  const Buf* out = &y;
  const std::vector<double>* oracle = &yd;
  double bytes = 4.0 * double(xs.numel() + ys.numel());
  switch (op) {
    case PoolOp::MaxForward:
      run = [&] { be->maxpool_forward(Tensor(y.p, ys, d), Tensor(x.p, xs, d), g); };
      cpu::maxpool_forward(vy, vx, g);
      break;
    case PoolOp::MaxBackward:
      run = [&] { be->maxpool_backward(Tensor(dx.p, xs, d), Tensor(dy.p, ys, d), Tensor(x.p, xs, d), g); };
      cpu::maxpool_backward(vdx, vdy, vx, g);
      out = &dx, oracle = &dxd, bytes += 4.0 * double(xs.numel());
      break;
    case PoolOp::AvgForward:
      run = [&] { be->avgpool_forward(Tensor(y.p, ys, d), Tensor(x.p, xs, d), g); };
      cpu::avgpool_forward(vy, vx, g);
      break;
    case PoolOp::AvgBackward:
      run = [&] { be->avgpool_backward(Tensor(dx.p, xs, d), Tensor(dy.p, ys, d), g); };
      cpu::avgpool_backward(vdx, vdy, g);
      out = &dx, oracle = &dxd;
      break;
    case PoolOp::GlobalForward:
      run = [&] { be->global_avgpool_forward(Tensor(y.p, ys, d), Tensor(x.p, xs, d)); };
      cpu::global_avgpool_forward(vy, vx);
      break;
  }
  check_and_time(state, *be, run, *out, *oracle, 1e-6, bytes, false);  // means of <= 100 floats: rounding only
}

// The weighted BCE head over (N, K) logits: reads z, labels, writes dz (and the loss).
void weighted_bce(benchmark::State& state, const std::string& device, int64_t N) {
  auto be = backend_or_skip(state, device);
  if (!be) return;
  const int64_t K = 14;
  auto zh = random_floats(size_t(N * K), 51), yh = random_floats(size_t(N * K), 52);
  for (auto& v : zh) v *= 4;
  for (auto& v : yh) v = v > 0.4f ? 1.0f : 0.0f;
  const std::vector<float> wp(size_t(K), 0.8f), wn(size_t(K), 0.2f);
  Buf z(*be, zh), y(*be, yh), pos(*be, wp), neg(*be, wn), dz(*be, zh.size()), loss(*be, size_t(1));
  auto run = [&] { be->weighted_bce(loss.p, dz.p, z.p, y.p, pos.p, neg.p, N, K); };
  auto zd = to_double(zh), yd = to_double(yh), pd = to_double(wp), nd = to_double(wn);
  std::vector<double> dzd(zh.size());
  double ld = 0;
  cpu::weighted_bce(&ld, dzd.data(), zd.data(), yd.data(), pd.data(), nd.data(), N, K);
  check_and_time(state, *be, run, dz, dzd, 1e-6, 3.0 * 4.0 * double(N * K), false);  // one sigmoid per element
}

// A whole class-activation map batch of one method at one level (C channels, h x h): the method's
// weighting (Grad-CAM: mean gradients; Grad-CAM++: its alpha-weighted positive gradients, then the
// weighted sum + ReLU; HiResCAM / LayerCAM: element-wise products + ReLU), scaling, bilinear
// upsampling to S x S. Reads features and gradients once, writes the maps. Each checked against the
// CPU twins in double before timing.
void cam_method(benchmark::State& state, const std::string& device, const std::string& method, int64_t C,
                int64_t h, int64_t S) {
  auto be = backend_or_skip(state, device);
  if (!be) return;
  const int64_t N = 8, hw = h * h;
  const Shape fs{N, C, h, h};
  auto fh = random_floats(size_t(fs.numel()), 61);
  for (auto& v : fh) v = std::abs(v);  // post-ReLU features
  auto gh = random_floats(size_t(fs.numel()), 62);
  for (auto& v : gh) v *= 1e-3f;  // gradients of a logit are small: Grad-CAM++'s a_ij in its usual range
  Buf f(*be, fh), g(*be, gh), wts(*be, size_t(N * C)), cam(*be, size_t(N * hw)), out(*be, size_t(N * S * S));
  const Device d = be->device();
  auto run = [&] {
    const Tensor gt(g.p, fs, d), ft(f.p, fs, d);
    if (method == "gradcam" || method == "gradcam++") {
      if (method == "gradcam") gradcam_channel_weights(*be, wts.p, gt);
      else gradcam_plusplus_weights(*be, wts.p, gt, ft);
      gradcam_weighted_sum_relu(*be, cam.p, wts.p, ft);
    } else {
      cam_elementwise_relu(*be, cam.p, gt, ft, method == "layercam");
    }
    gradcam_normalize(*be, cam.p, N, hw);
    bilinear_resize(*be, out.p, S, S, cam.p, N, h, h);
  };
  auto fd = to_double(fh), gd = to_double(gh);
  std::vector<double> wd(static_cast<size_t>(N * C)), cd(static_cast<size_t>(N * hw)), od(static_cast<size_t>(N * S * S));
  if (method == "gradcam" || method == "gradcam++") {
    if (method == "gradcam") cpu::gradcam_channel_weights(wd.data(), gd.data(), N, C, hw, C * hw);
    else cpu::gradcam_plusplus_weights(wd.data(), gd.data(), C * hw, fd.data(), C * hw, N, C, hw);
    cpu::gradcam_weighted_sum_relu(cd.data(), wd.data(), fd.data(), N, C, hw, C * hw);
  } else {
    cpu::cam_elementwise_relu(cd.data(), gd.data(), C * hw, fd.data(), C * hw, N, C, hw, method == "layercam");
  }
  cpu::gradcam_normalize(cd.data(), N, hw);
  cpu::bilinear_resize(od.data(), S, S, cd.data(), N, h, h);
  // Sums of C products of random signs: the map is a small difference of large terms, so its float
  // error relative to the map is ~1e-5, not 1e-7.
  check_and_time(state, *be, run, out, od, 1e-4, 4.0 * double(2 * fs.numel() + N * S * S), false);
}

#define CXR_KERNEL_BENCHES(dev)                                                                             \
  BENCHMARK_CAPTURE(conv_forward, dev##_3x3_128to32_32px, std::string(#dev), 128, 32, 3, 32)->UseRealTime(); \
  BENCHMARK_CAPTURE(conv_forward, dev##_1x1_224to128_32px, std::string(#dev), 224, 128, 1, 32)->UseRealTime(); \
  BENCHMARK_CAPTURE(bn_forward, dev##_256ch_32px, std::string(#dev), 256, 32)->UseRealTime();               \
  BENCHMARK_CAPTURE(adam, dev##_densenet121, std::string(#dev))->UseRealTime();                            \
  BENCHMARK_CAPTURE(conv_backward, dev##_3x3_128to32_32px_data, std::string(#dev), 128, 32, 3, 32, false)->UseRealTime(); \
  BENCHMARK_CAPTURE(conv_backward, dev##_3x3_128to32_32px_filter, std::string(#dev), 128, 32, 3, 32, true)->UseRealTime(); \
  BENCHMARK_CAPTURE(conv_backward, dev##_1x1_224to128_32px_data, std::string(#dev), 224, 128, 1, 32, false)->UseRealTime(); \
  BENCHMARK_CAPTURE(conv_backward, dev##_1x1_224to128_32px_filter, std::string(#dev), 224, 128, 1, 32, true)->UseRealTime(); \
  BENCHMARK_CAPTURE(conv_forward, dev##_1x1_992to128_4px, std::string(#dev), 992, 128, 1, 4)->UseRealTime(); \
  BENCHMARK_CAPTURE(bn_backward, dev##_256ch_32px, std::string(#dev), 256, 32)->UseRealTime();             \
  BENCHMARK_CAPTURE(relu_backward, dev##_256ch_32px, std::string(#dev), 256, 32)->UseRealTime();           \
  BENCHMARK_CAPTURE(pool, dev##_max3x3s2_forward_64ch_64px, std::string(#dev), PoolOp::MaxForward, 64, 64)->UseRealTime(); \
  BENCHMARK_CAPTURE(pool, dev##_max3x3s2_backward_64ch_64px, std::string(#dev), PoolOp::MaxBackward, 64, 64)->UseRealTime(); \
  BENCHMARK_CAPTURE(pool, dev##_avg2x2_forward_256ch_32px, std::string(#dev), PoolOp::AvgForward, 256, 32)->UseRealTime(); \
  BENCHMARK_CAPTURE(pool, dev##_avg2x2_backward_256ch_32px, std::string(#dev), PoolOp::AvgBackward, 256, 32)->UseRealTime(); \
  BENCHMARK_CAPTURE(pool, dev##_global_avg_1024ch_4px, std::string(#dev), PoolOp::GlobalForward, 1024, 4)->UseRealTime(); \
  BENCHMARK_CAPTURE(weighted_bce, dev##_8x14, std::string(#dev), 8)->UseRealTime();                        \
  BENCHMARK_CAPTURE(cam_method, dev##_gradcam_final_1024ch_10px_to_320, std::string(#dev), "gradcam", 1024, 10, 320)->UseRealTime(); \
  BENCHMARK_CAPTURE(cam_method, dev##_gradcampp_final_1024ch_10px_to_320, std::string(#dev), "gradcam++", 1024, 10, 320)->UseRealTime(); \
  BENCHMARK_CAPTURE(cam_method, dev##_hirescam_final_1024ch_10px_to_320, std::string(#dev), "hirescam", 1024, 10, 320)->UseRealTime(); \
  BENCHMARK_CAPTURE(cam_method, dev##_layercam_final_1024ch_10px_to_320, std::string(#dev), "layercam", 1024, 10, 320)->UseRealTime(); \
  BENCHMARK_CAPTURE(cam_method, dev##_gradcam_block2_512ch_40px_to_320, std::string(#dev), "gradcam", 512, 40, 320)->UseRealTime(); \
  BENCHMARK_CAPTURE(cam_method, dev##_gradcampp_block2_512ch_40px_to_320, std::string(#dev), "gradcam++", 512, 40, 320)->UseRealTime(); \
  BENCHMARK_CAPTURE(cam_method, dev##_hirescam_block2_512ch_40px_to_320, std::string(#dev), "hirescam", 512, 40, 320)->UseRealTime(); \
  BENCHMARK_CAPTURE(cam_method, dev##_layercam_block2_512ch_40px_to_320, std::string(#dev), "layercam", 512, 40, 320)->UseRealTime();
CXR_KERNEL_BENCHES(cpu)
CXR_KERNEL_BENCHES(cuda)

}  // namespace
