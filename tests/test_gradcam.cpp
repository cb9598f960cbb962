// Grad-CAM: the kernels' CPU twins against direct computations, the CUDA kernels against the twins,
// a whole map against PyTorch (tests/fixtures/make_gradcam_fixture.py), the pointing-game rules,
// and `cxr gradcam` end to end (synthetic data with boxes; the two real NIH 512x512 images).
//
// Real images: NIH ChestX-ray14 (https://nihcc.app.box.com/v/ChestXray-NIHCC; Wang et al.,
// "ChestX-ray8", CVPR 2017), provided by the NIH Clinical Center; read from ../shared, never copied.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/init.h"
#include "engine/model.h"
#include "io/checkpoint.h"
#include "io/classes.h"
#include "io/csv.h"
#include "io/fileutil.h"
#include "io/hdf5.h"
#include "io/image.h"
#include "kernels/cam_ops.h"
#include "test_data_util.h"
#include "test_util.h"
#include "tools/cam_maps.h"
#include "tools/cam_scores.h"
#include "tools/gradcam_command.h"
#include "tools/overlay.h"

namespace cxr::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- direct computations (double, written from the definitions) ------------------------------

struct Problem {
  int64_t n = 3, c = 37, h = 5, w = 7, bstride = 37 * 35 + 11;  // strided batch, like a dense-block slice
  std::vector<float> grads, feats;
  explicit Problem(uint64_t seed) {
    grads = random_vector(size_t(n * bstride), seed);
    feats = random_vector(size_t(n * bstride), seed + 1, 0.0f, 1.0f);  // post-ReLU features are >= 0
  }
  int64_t hw() const { return h * w; }
};

std::vector<double> direct_weights(const Problem& p) {
  std::vector<double> a(size_t(p.n * p.c));
  for (int64_t i = 0; i < p.n; ++i)
    for (int64_t k = 0; k < p.c; ++k) {
      double s = 0;
      for (int64_t y = 0; y < p.h; ++y)
        for (int64_t x = 0; x < p.w; ++x) s += p.grads[size_t(i * p.bstride + (k * p.h + y) * p.w + x)];
      a[size_t(i * p.c + k)] = s / double(p.h * p.w);
    }
  return a;
}

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

TEST(GradCamKernels, CpuChannelWeightsAndWeightedSumMatchDirect) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Problem p(seed);
  std::vector<float> w(size_t(p.n * p.c), NAN), cam(size_t(p.n * p.hw()), NAN);
  cpu::gradcam_channel_weights(w.data(), p.grads.data(), p.n, p.c, p.hw(), p.bstride);
  const auto want_w = direct_weights(p);
  // Both sum in double and round once: agreement to float rounding (1e-6 relative is ~8 ulp).
  EXPECT_LT(rel_error(w, to_float(want_w)), 1e-6);

  cpu::gradcam_weighted_sum_relu(cam.data(), w.data(), p.feats.data(), p.n, p.c, p.hw(), p.bstride);
  std::vector<double> want(size_t(p.n * p.hw()));
  int64_t zeros = 0;
  for (int64_t i = 0; i < p.n; ++i)
    for (int64_t j = 0; j < p.hw(); ++j) {
      double s = 0;
      for (int64_t k = 0; k < p.c; ++k)
        s += double(w[size_t(i * p.c + k)]) * p.feats[size_t(i * p.bstride + k * p.hw() + j)];
      want[size_t(i * p.hw() + j)] = std::max(0.0, s);
      zeros += s <= 0;
    }
  EXPECT_GT(zeros, 0) << "random signed weights should make the ReLU cut some cells";
  EXPECT_LT(rel_error(cam, to_float(want)), 1e-6);
}

// Grad-CAM++'s weights written from pytorch-grad-cam's formula (grad_cam_plusplus.py), in double.
std::vector<double> direct_plusplus(const Problem& p, int64_t f_bstride, const std::vector<float>& feats) {
  std::vector<double> w(size_t(p.n * p.c));
  for (int64_t i = 0; i < p.n; ++i)
    for (int64_t k = 0; k < p.c; ++k) {
      double sa = 0;
      for (int64_t j = 0; j < p.hw(); ++j) sa += feats[size_t(i * f_bstride + k * p.hw() + j)];
      double s = 0;
      for (int64_t j = 0; j < p.hw(); ++j) {
        const double g = p.grads[size_t(i * p.bstride + k * p.hw() + j)];
        const double aij = g != 0 ? g * g / (2 * g * g + sa * g * g * g + 1e-6) : 0.0;
        s += std::max(g, 0.0) * aij;
      }
      w[size_t(i * p.c + k)] = s;
    }
  return w;
}

TEST(GradCamKernels, CpuPlusPlusWeightsMatchDirect) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Problem p(seed);
  for (int64_t j = 0; j < p.n * p.bstride; j += 7) p.grads[size_t(j)] = 0.0f;  // the g == 0 branch
  const int64_t f_bstride = p.c * p.hw();                                      // packed, unlike grads
  const auto feats = random_vector(size_t(p.n * f_bstride), seed + 3, 0.0f, 1.0f);
  std::vector<float> w(size_t(p.n * p.c), NAN);
  cpu::gradcam_plusplus_weights(w.data(), p.grads.data(), p.bstride, feats.data(), f_bstride, p.n, p.c, p.hw());
  // Both evaluate the same formula in double and round once; only the order of the two additions in
  // the denominator may differ: agreement to float rounding (1e-6 relative is ~8 ulp).
  EXPECT_LT(rel_error(w, to_float(direct_plusplus(p, f_bstride, feats))), 1e-6);
  EXPECT_GT(*std::max_element(w.begin(), w.end()), 0.0f);
}

TEST(GradCamKernels, CpuElementwiseMatchesDirect) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Problem p(seed);
  const int64_t f_bstride = p.c * p.hw();
  auto feats = random_vector(size_t(p.n * f_bstride), seed + 3, -0.5f, 1.0f);  // block outputs can be < 0
  // Cell (0, 0) against its gradients' signs, so the ReLU cuts at least one cell for both methods
  // whatever the seed (seed 5588355355541459299 cut none for LayerCAM with random values alone).
  for (int64_t k = 0; k < p.c; ++k)
    feats[size_t(k * p.hw())] = p.grads[size_t(k * p.hw())] < 0 ? 0.5f : -0.5f;
  for (bool positive : {false, true}) {
    std::vector<float> cam(size_t(p.n * p.hw()), NAN);
    cpu::cam_elementwise_relu(cam.data(), p.grads.data(), p.bstride, feats.data(), f_bstride, p.n, p.c, p.hw(),
                              positive);
    std::vector<double> want(cam.size());
    int64_t cut = 0;
    for (int64_t i = 0; i < p.n; ++i)
      for (int64_t j = 0; j < p.hw(); ++j) {
        double s = 0;
        for (int64_t k = 0; k < p.c; ++k) {
          const double g = p.grads[size_t(i * p.bstride + k * p.hw() + j)];
          s += (positive ? std::max(g, 0.0) : g) * feats[size_t(i * f_bstride + k * p.hw() + j)];
        }
        want[size_t(i * p.hw() + j)] = std::max(s, 0.0);
        cut += s <= 0;
      }
    EXPECT_GT(cut, 0) << "the ReLU should cut some cells";
    EXPECT_LT(rel_error(cam, to_float(want)), 1e-6) << (positive ? "LayerCAM" : "HiResCAM");
  }
}

TEST(GradCamKernels, CpuNormalizeScalesToOneAndKeepsZeroMaps) {
  std::vector<float> m = {0, 2, 4, 1, /*all zero:*/ 0, 0, 0, 0, /*one cell:*/ 0, 0, 3e-30f, 0};
  cpu::gradcam_normalize(m.data(), 3, 4);
  const std::vector<float> want = {0, 0.5f, 1, 0.25f, 0, 0, 0, 0, 0, 0, 1, 0};
  EXPECT_EQ(m, want);
}

TEST(GradCamKernels, CpuBilinearMatchesPyTorchHalfPixelExample) {
  // torch.nn.functional.interpolate([[0, 1], [2, 3]], size=(4, 4), mode="bilinear", align_corners=False)
  const std::vector<float> in = {0, 1, 2, 3};
  std::vector<float> out(16, NAN);
  cpu::bilinear_resize(out.data(), 4, 4, in.data(), 1, 2, 2);
  const std::vector<float> want = {0.0f, 0.25f, 0.75f, 1.0f, 0.5f, 0.75f, 1.25f, 1.5f,
                                   1.5f, 1.75f, 2.25f, 2.5f, 2.0f, 2.25f, 2.75f, 3.0f};
  EXPECT_EQ(out, want);
}

TEST(GradCamKernels, CpuBilinearReproducesBilinearFunctions) {
  // Bilinear interpolation is exact for f(x, y) = a + b x + c y + d x y sampled at the cell centres;
  // the output then equals f at the half-pixel source position, clamped to the input's extent.
  const int64_t h = 3, w = 5, H = 37, W = 29;
  auto f = [](double x, double y) { return 0.3 + 0.7 * x - 0.2 * y + 0.05 * x * y; };
  std::vector<double> in(size_t(2 * h * w));
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) in[size_t((i * h + y) * w + x)] = f(double(x), double(y)) * (i + 1);
  std::vector<double> out(size_t(2 * H * W));
  cpu::bilinear_resize(out.data(), H, W, in.data(), 2, h, w);
  double worst = 0;
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const double sx = std::clamp((x + 0.5) * double(w) / double(W) - 0.5, 0.0, double(w - 1));
        const double sy = std::clamp((y + 0.5) * double(h) / double(H) - 0.5, 0.0, double(h - 1));
        worst = std::max(worst, std::abs(out[size_t((i * H + y) * W + x)] - f(sx, sy) * (i + 1)));
      }
  EXPECT_LT(worst, 1e-12);  // double arithmetic, exact up to rounding
  // Same size: the identity.
  std::vector<double> same(in.size());
  cpu::bilinear_resize(same.data(), h, w, in.data(), 2, h, w);
  EXPECT_EQ(same, in);
}

TEST(GradCamKernels, BackendDispatchOnCpuMatchesTwins) {
  auto be = make_cpu_backend();
  Problem p(fresh_seed());
  std::vector<float> w(size_t(p.n * p.c)), w2(w.size());
  gradcam_channel_weights(*be, w.data(),
                          Tensor(p.grads.data(), Shape{p.n, p.c, p.h, p.w}, p.bstride, Device::CPU));
  cpu::gradcam_channel_weights(w2.data(), p.grads.data(), p.n, p.c, p.hw(), p.bstride);
  EXPECT_EQ(w, w2);
}

// ---- CUDA against the CPU twins ----------------------------------------------------------------

TEST(GradCamKernels, GpuMatchesCpu) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu_be = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Problem p(seed);
  p.n = 5, p.c = 1024, p.h = 10, p.w = 10, p.bstride = 1024 * 100 + 64;  // DenseNet at 320, strided
  p.grads = random_vector(size_t(p.n * p.bstride), seed, -1e-3f, 1e-3f);
  p.feats = random_vector(size_t(p.n * p.bstride), seed + 1, 0.0f, 3.0f);
  const Shape s{p.n, p.c, p.h, p.w};
  const int64_t H = 320, W = 288;

  std::vector<float> w_cpu(size_t(p.n * p.c)), cam_cpu(size_t(p.n * p.hw())), up_cpu(size_t(p.n * H * W));
  gradcam_channel_weights(*cpu_be, w_cpu.data(), Tensor(p.grads.data(), s, p.bstride, Device::CPU));
  gradcam_weighted_sum_relu(*cpu_be, cam_cpu.data(), w_cpu.data(),
                            Tensor(p.feats.data(), s, p.bstride, Device::CPU));
  gradcam_normalize(*cpu_be, cam_cpu.data(), p.n, p.hw());
  bilinear_resize(*cpu_be, up_cpu.data(), H, W, cam_cpu.data(), p.n, p.h, p.w);

  DeviceBuffer g(*gpu, p.grads), f(*gpu, p.feats), w(*gpu, size_t(p.n * p.c)),
      cam(*gpu, size_t(p.n * p.hw())), up(*gpu, size_t(p.n * H * W));
  w.poison(), cam.poison(), up.poison();
  gradcam_channel_weights(*gpu, w.data(), g.tensor(s, p.bstride));
  gradcam_weighted_sum_relu(*gpu, cam.data(), w.data(), f.tensor(s, p.bstride));
  const std::vector<float> cam_raw = cam.host();
  gradcam_normalize(*gpu, cam.data(), p.n, p.hw());
  bilinear_resize(*gpu, up.data(), H, W, cam.data(), p.n, p.h, p.w);
  // The kernels sum in double in the CPU's order without fused multiply-adds: the results should be
  // bitwise equal; 1e-6 relative leaves room for a host compiler that contracts to FMA.
  EXPECT_LT(rel_error(w.host(), w_cpu), 1e-6);
  EXPECT_LT(rel_error(cam.host(), cam_cpu), 1e-6);
  EXPECT_LT(rel_error(up.host(), up_cpu), 1e-6);
  EXPECT_GT(*std::max_element(cam_raw.begin(), cam_raw.end()), 0.0f)
      << "the test maps should not be all zero";

  // Upsampling alone on random maps (also non-integer and downsampling ratios).
  const auto small = random_vector(size_t(3 * 7 * 9), seed + 2);
  DeviceBuffer in(*gpu, small);
  for (auto [oh, ow] : {std::pair<int64_t, int64_t>{64, 80}, {7, 9}, {5, 4}, {1, 1}}) {
    std::vector<float> want(size_t(3 * oh * ow));
    cpu::bilinear_resize(want.data(), oh, ow, small.data(), 3, 7, 9);
    DeviceBuffer out(*gpu, want.size());
    out.poison();
    bilinear_resize(*gpu, out.data(), oh, ow, in.data(), 3, 7, 9);
    EXPECT_LT(rel_error(out.host(), want), 1e-6) << oh << "x" << ow;
  }
}

TEST(GradCamKernels, GpuPlusPlusAndElementwiseMatchCpu) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu_be = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t n = 3, c = 512, h = 40, w = 40, g_bstride = c * h * w, f_bstride = 1024 * h * w;  // block 2 at 320
  const Shape s{n, c, h, w};
  auto grads = random_vector(size_t(n * g_bstride), seed, -1e-3f, 1e-3f);
  for (size_t j = 0; j < grads.size(); j += 5) grads[j] = 0.0f;
  const auto feats = random_vector(size_t(n * f_bstride), seed + 1, -1.0f, 3.0f);
  DeviceBuffer g(*gpu, grads), f(*gpu, feats), wts(*gpu, size_t(n * c)), cam(*gpu, size_t(n * h * w));
  std::vector<float> w_cpu(size_t(n * c)), cam_cpu(size_t(n * h * w));
  const Tensor gc(grads.data(), s, g_bstride, Device::CPU), fc(const_cast<float*>(feats.data()), s, f_bstride, Device::CPU);
  gradcam_plusplus_weights(*cpu_be, w_cpu.data(), gc, fc);
  wts.poison();
  gradcam_plusplus_weights(*gpu, wts.data(), g.tensor(s, g_bstride), f.tensor(s, f_bstride));
  // The same double operations in the same order, no fused multiply-add: equal up to a host
  // compiler's contraction (1e-6 relative).
  EXPECT_LT(rel_error(wts.host(), w_cpu), 1e-6);
  for (bool positive : {false, true}) {
    cam_elementwise_relu(*cpu_be, cam_cpu.data(), gc, fc, positive);
    cam.poison();
    cam_elementwise_relu(*gpu, cam.data(), g.tensor(s, g_bstride), f.tensor(s, f_bstride), positive);
    EXPECT_LT(rel_error(cam.host(), cam_cpu), 1e-6) << (positive ? "LayerCAM" : "HiResCAM");
  }
}

// ---- a whole map against PyTorch ----------------------------------------------------------------

struct TorchFixture {
  std::vector<float> input, classes, logits, maps;
  int64_t n = 2, s = 128, per_image = 2;
};

TorchFixture load_torch_fixture() {
  TorchFixture f;
  auto file = io::h5::open_file(source_path("tests/fixtures/gradcam_torch.h5"));
  f.input.resize(size_t(f.n * 3 * f.s * f.s));
  f.classes.resize(size_t(f.n * f.per_image));
  f.logits.resize(size_t(f.n * 14));
  f.maps.resize(size_t(f.n * f.per_image * f.s * f.s));
  io::h5::read_floats(file, "input", f.input.data(), int64_t(f.input.size()));
  io::h5::read_floats(file, "classes", f.classes.data(), int64_t(f.classes.size()));
  io::h5::read_floats(file, "logits", f.logits.data(), int64_t(f.logits.size()));
  io::h5::read_floats(file, "maps", f.maps.data(), int64_t(f.maps.size()));
  return f;
}

void check_against_torch(Backend& be) {
  const TorchFixture fx = load_torch_fixture();
  DenseNet net(be, DenseNetConfig::from_arch("densenet121", 14), fx.n, fx.s, fx.s, /*trainable=*/false);
  std::vector<float> params, state;
  net.get_weights(&params, &state);
  init_test_generator(net.table(), params, state);
  net.set_weights(params, state);
  be.copy_to_device(net.input().data, fx.input.data(), sizeof(float) * fx.input.size());
  net.forward(false);
  // float32 through 120 convolutions against PyTorch in float64: ~1e-6 relative; 1e-4 is the bound.
  EXPECT_LT(rel_error(net.get_logits(), fx.logits), 1e-4) << "the forward pass already differs from PyTorch";

  app::CamMaps cam(net, app::CamMethod::GradCam, app::parse_cam_layer("final", net), fx.s, fx.s);
  const int64_t plane = fx.s * fx.s;
  for (int64_t j = 0; j < fx.per_image; ++j) {
    std::vector<int> cls;
    std::vector<float> want;
    for (int64_t i = 0; i < fx.n; ++i) {
      cls.push_back(int(fx.classes[size_t(i * fx.per_image + j)]));
      const float* m = fx.maps.data() + (i * fx.per_image + j) * plane;
      want.insert(want.end(), m, m + plane);
    }
    const auto got = cam.compute(cls);
    // float32 against float64, measured ~5e-7 relative (1e-6 absolute on maps in [0, 1]); 2e-5 is
    // that with a 20x margin for other BLAS builds. The fixture's smallest weighted sum is 0.29 of its
    // map's maximum, so no cell is near the ReLU's kink: no slack is needed for flipped cells.
    EXPECT_LT(rel_error(got, want), 2e-5) << "classes " << cls[0] << ", " << cls[1];
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::abs(got[i] - want[i])));
    EXPECT_LT(worst, 2e-5);
    std::printf("%s, classes %d/%d: relative error %.2e, max abs %.2e\n", be.name().c_str(), cls[0], cls[1],
                rel_error(got, want), worst);
    // The raw 4x4 maps (before scaling) are what the maps were scaled from: none is all zero.
    const auto low = cam.raw(0);
    const int64_t cells = cam.level_h(0) * cam.level_w(0);
    EXPECT_EQ(cells, 16);
    for (int64_t i = 0; i < fx.n; ++i)
      EXPECT_GT(*std::max_element(low.begin() + i * cells, low.begin() + (i + 1) * cells), 0.0f);
  }
}

TEST(GradCam, WholeMapMatchesPyTorchCpu) {
  auto be = make_cpu_backend();
  check_against_torch(*be);
}

TEST(GradCam, WholeMapMatchesPyTorchGpu) {
  CXR_REQUIRE_CUDA(gpu);
  check_against_torch(*gpu);
}

TEST(GradCam, NoClassGivesZeroMap) {
  auto be = make_cpu_backend();
  DenseNet net(*be, DenseNetConfig::from_arch("densenet121", 14), 2, 64, 64, false);
  std::vector<float> params, state;
  net.get_weights(&params, &state);
  init_test_generator(net.table(), params, state);
  net.set_weights(params, state);
  const auto x = random_vector(size_t(2 * 3 * 64 * 64), fresh_seed());
  be->copy_to_device(net.input().data, x.data(), sizeof(float) * x.size());
  net.forward(false);
  app::CamMaps cam(net, app::CamMethod::GradCam, app::parse_cam_layer("final", net), 64, 64);
  const auto m = cam.compute({-1, 3});
  EXPECT_TRUE(std::all_of(m.begin(), m.begin() + 64 * 64, [](float v) { return v == 0.0f; }));
  EXPECT_GT(*std::max_element(m.begin() + 64 * 64, m.end()), 0.0f);
  const auto low = cam.raw(0);  // (2, 2, 2), before scaling
  EXPECT_TRUE(std::all_of(low.begin(), low.begin() + 4, [](float v) { return v == 0.0f; }));
  EXPECT_GT(*std::max_element(low.begin() + 4, low.end()), 0.0f);
}

// ---- pointing game and rendering ----------------------------------------------------------------

TEST(GradCam, PointingGameRules) {
  std::vector<float> m(10 * 8, 0.0f);                     // w = 10, h = 8
  const std::vector<app::PixelBox> box = {{2, 1, 3, 2}};  // x 2..5, y 1..3
  EXPECT_FALSE(app::pointing_hit(m.data(), 10, 8, box, 0)) << "an all-zero map never hits";
  m[2 * 10 + 3] = 1.0f;  // pixel (3, 2): centre (3.5, 2.5) inside
  EXPECT_TRUE(app::pointing_hit(m.data(), 10, 8, box, 0));
  m[2 * 10 + 3] = 0.5f;
  m[7 * 10 + 9] = 1.0f;  // maximum far away
  EXPECT_FALSE(app::pointing_hit(m.data(), 10, 8, box, 0));
  EXPECT_TRUE(app::pointing_hit(m.data(), 10, 8, box, 6.0)) << "tolerance grows the box";
  m[2 * 10 + 3] = 1.0f;  // a tie inside and outside: hit
  EXPECT_TRUE(app::pointing_hit(m.data(), 10, 8, box, 0));
  EXPECT_EQ((app::map_peak(m.data(), 10, 8)), (std::array<int64_t, 2>{3, 2}));
}

TEST(GradCam, OverlayBlendsTurbo) {
  const auto& lut = app::turbo_colormap();
  EXPECT_EQ(lut[0], (std::array<uint8_t, 3>{48, 18, 59}));
  EXPECT_EQ(lut[255], (std::array<uint8_t, 3>{122, 4, 3}));
  const uint8_t grey[2] = {100, 200};
  const float map[2] = {0.0f, 1.0f};
  const auto rgb = app::blend_overlay(grey, map, 2, 1, 0.5);
  EXPECT_EQ(rgb[0], uint8_t(std::lround(0.5 * 100 + 0.5 * 48)));
  EXPECT_EQ(rgb[5], uint8_t(std::lround(0.5 * 200 + 0.5 * 3)));
}

// ---- the command --------------------------------------------------------------------------------

// A model file of random (Keras-default) weights for S x S images.
void write_random_model(const std::string& path, int64_t S, uint64_t seed) {
  auto be = make_cpu_backend();
  DenseNet net(*be, DenseNetConfig::from_arch("densenet121", 14), 1, S, S, false);
  std::vector<float> params, state;
  net.get_weights(&params, &state);
  init_keras_default(net.table(), params, state, seed);
  io::ModelMeta meta;
  meta.class_names.assign(io::kClassNames.begin(), io::kClassNames.end());
  meta.image_size = S;
  io::save_checkpoint(path, net.table(), params, state, meta);
}

TEST(GradCam, CliSyntheticBoxesPointingGame) {
  ScratchDir dir("gradcam_cli");
  RunResult run = run_cxr(dir, "synth --out " + dir / "synth" + " --patients 6 --size 64 --seed 3");
  ASSERT_EQ(run.status, 0) << run.err;
  write_random_model(dir / "model.h5", 64, 7);
  const std::string base = "gradcam --weights " + dir / "model.h5" + " --batch 4 --device cpu --quiet ";
  run = run_cxr(dir, base + "--out " + dir / "cam" + " --top-k 1 --boxes " + dir / "synth/BBox_List_2017.csv" +
                         " --json " + dir / "synth/images");
  ASSERT_EQ(run.status, 0) << run.err;
  const json r = json::parse(run.out);
  ASSERT_TRUE(r.contains("pointing_game")) << run.out.substr(0, 400);
  const auto boxes = io::read_bbox_csv(dir / "synth/BBox_List_2017.csv");
  ASSERT_FALSE(boxes.empty());
  ASSERT_TRUE(r["pointing_game"].is_number());
  EXPECT_GE(r["pointing_game"].get<double>(), 0.0);
  EXPECT_LE(r["pointing_game"].get<double>(), 1.0);
  EXPECT_TRUE(r["pointing_game_per_class"].is_object());
  EXPECT_GT(r["pointing_game_pairs"].get<int64_t>(), 0);
  int64_t with_boxes = 0;
  for (const json& m : r["maps"]) {
    EXPECT_TRUE(fs::exists(dir / ("cam/" + m["file"].get<std::string>()))) << m.dump();
    const std::string f = m["file"];
    EXPECT_NE(f.find(m["class"].get<std::string>()), std::string::npos);
    EXPECT_TRUE(f.find("_p0.") != std::string::npos || f.find("_p1.") != std::string::npos) << f;
    with_boxes += m.contains("hit");
  }
  EXPECT_EQ(with_boxes, r["pointing_game_pairs"].get<int64_t>());
  EXPECT_TRUE(fs::exists(dir / "cam/gradcam.json"));

  // The table form: one line per map plus the pointing-game table.
  run = run_cxr(dir, base + "--out " + dir / "cam2" + " --class Cardiomegaly,Mass " + dir / "synth/images");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("Cardiomegaly"), std::string::npos);
  EXPECT_NE(run.out.find("p="), std::string::npos);

  // Errors: one line on stderr, non-zero exit.
  run = run_cxr(dir, base + "--out " + dir / "cam3" + " --class NoSuchClass " + dir / "synth/images");
  EXPECT_NE(run.status, 0);
  EXPECT_NE(run.err.find("NoSuchClass"), std::string::npos) << run.err;
  EXPECT_NE(run_cxr(dir, base + "--out " + dir / "cam3" + " --all --top-k 2 " + dir / "synth/images").status, 0);
}

TEST(GradCam, RealNih512Overlays) {
  const std::string images = shared_path("data/nih-512");
  if (images.empty())
    GTEST_SKIP() << "../shared/data/nih-512 is absent (real NIH images are never copied here)";
  // Kept after the test for a look: <gtest temp dir>/cxr_gradcam_nih512/.
  const std::string out = (fs::path(::testing::TempDir()) / "cxr_gradcam_nih512").string();
  fs::remove_all(out);
  fs::create_directories(out);
  write_random_model(out + "/model.h5", 512, 11);
  app::GradcamOptions opt;
  opt.weights = out + "/model.h5";
  opt.out = out;
  opt.inputs = {images};
  opt.top_k = 2;
  opt.batch = 2;
  opt.quiet = true;
  const json r = app::gradcam(opt, false);
  EXPECT_EQ(r["images"].get<int64_t>(), 2);
  ASSERT_EQ(r["maps"].size(), 4u);
  for (const json& m : r["maps"]) {
    io::GreyImage img;
    std::string e;
    const std::string path = out + "/" + m["file"].get<std::string>();
    ASSERT_TRUE(io::decode_grey(path, &img, &e)) << path << ": " << e;
    EXPECT_EQ(img.width, 512);
    EXPECT_EQ(img.height, 512);
    std::printf("overlay: %s\n", path.c_str());
  }
}

}  // namespace
}  // namespace cxr::test
