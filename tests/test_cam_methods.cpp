// Class activation maps at every level and with every method: the explanation backward
// (DenseNet::explain_backward) against finite differences of the inference forward, and the maps of
// Grad-CAM, Grad-CAM++, HiResCAM and LayerCAM at the final map, dense blocks 3 and 2 and fused,
// against pytorch-grad-cam (tests/fixtures/make_cam_methods_fixture.py) on the same weights and input.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/init.h"
#include "engine/model.h"
#include "io/classes.h"
#include "io/csv.h"
#include "io/hdf5.h"
#include "test_data_util.h"
#include "test_util.h"
#include "tools/cam_maps.h"

namespace cxr::test {
namespace {

void load_test_weights(DenseNet& net) {
  std::vector<float> params, state;
  net.get_weights(&params, &state);
  init_test_generator(net.table(), params, state);
  net.set_weights(params, state);
}

std::vector<float> host_of(Backend& be, const Tensor& t) {  // packed (N, C, H, W)
  const int64_t per = t.c() * t.h() * t.w();
  std::vector<float> v(size_t(t.n() * per));
  for (int64_t i = 0; i < t.n(); ++i)
    be.copy_to_host(v.data() + i * per, t.data + i * t.batch_stride, sizeof(float) * size_t(per));
  be.synchronize();
  return v;
}

void set_from_host(Backend& be, const Tensor& t, const std::vector<float>& v) {
  const int64_t per = t.c() * t.h() * t.w();
  for (int64_t i = 0; i < t.n(); ++i)
    be.copy_to_device(t.data + i * t.batch_stride, v.data() + i * per, sizeof(float) * size_t(per));
  be.synchronize();
}

// ---- the explanation backward against finite differences ------------------------------------------

TEST(ExplainBackward, EveryLevelMatchesFiniteDifferencesOfTheInferenceForward) {
  // f = logit[0, 3] + logit[1, 7]. The inference forward after any level is piecewise linear in that
  // level's activations (frozen BNs, ReLUs, average pools, convolutions, the dense head), so a central
  // difference along a direction v is exactly <grad f, v> unless a ReLU flips within the step. The
  // step is 1e-3 of the activations' RMS per element: flips are then rare and each moves f by a
  // second-order amount. Float32 forward noise is ~1e-6 of |f| (~1e-5 here), against directional
  // changes above 1e-3: the bound 2% + 1e-4 leaves a margin over the noise and the flips seen
  // (measured worst: printed below), while a wrong path (a missed channel, a transposed kernel, the
  // training-mode BN backward) is off by O(1).
  auto be = make_cpu_backend();
  const int64_t N = 2, S = 64;
  DenseNet net(*be, DenseNetConfig::from_arch("densenet121", 14), N, S, S, /*trainable=*/false);
  load_test_weights(net);
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const auto x = random_vector(size_t(N * 3 * S * S), seed);
  be->copy_to_device(net.input().data, x.data(), sizeof(float) * x.size());
  net.forward(false);
  std::vector<float> onehot(size_t(N * 14), 0.0f);
  onehot[3] = 1.0f, onehot[14 + 7] = 1.0f;
  DeviceBuffer dlogits(*be, onehot), ping(*be, size_t(net.explain_buffer_floats(0))),
      pong(*be, size_t(net.explain_buffer_floats(0)));
  std::vector<std::vector<float>> grads(size_t(net.explain_levels()));
  std::vector<int> order;
  net.explain_backward(dlogits.data(), 0, ping.data(), pong.data(), [&](int level, const Tensor& g) {
    order.push_back(level);
    EXPECT_EQ(g.shape, net.level_activations(level).shape) << "level " << level;
    grads[size_t(level)] = host_of(*be, g);
  });
  EXPECT_EQ(order, (std::vector<int>{4, 3, 2, 1, 0})) << "top down, each level once";

  auto f = [&] {
    const auto z = net.get_logits();
    return double(z[3]) + double(z[14 + 7]);
  };
  std::mt19937_64 rng(seed);
  double worst = 0;
  for (int level = 0; level < net.explain_levels(); ++level) {
    const Tensor a = net.level_activations(level);
    const std::vector<float> a0 = host_of(*be, a);
    double ms = 0;
    for (float v : a0) ms += double(v) * double(v);
    const double step = 1e-3 * std::sqrt(ms / double(a0.size()));
    for (int dir = 0; dir < 2; ++dir) {
      // Along sign(grad) times random magnitudes: every element's term adds, so the directional change
      // stands far above the float noise (a random +-1 direction cancels to ~1e-5 at block 2), and a
      // wrong sign or size anywhere in the gradient shows as a mismatch.
      std::uniform_real_distribution<double> u(0.25, 1);
      std::vector<double> v(a0.size());
      for (size_t i = 0; i < v.size(); ++i) {
        const float g = grads[size_t(level)][i];
        v[i] = (g > 0 ? 1.0 : g < 0 ? -1.0 : 0.0) * u(rng) * step;
      }
      double analytic = 0;
      for (size_t i = 0; i < v.size(); ++i) analytic += double(grads[size_t(level)][i]) * v[i];
      double fs[2];
      for (int sgn : {1, -1}) {
        std::vector<float> moved(a0.size());
        for (size_t i = 0; i < v.size(); ++i) moved[i] = float(double(a0[i]) + sgn * v[i]);
        set_from_host(*be, a, moved);
        net.forward_from_level(level);
        fs[sgn > 0 ? 0 : 1] = f();
      }
      set_from_host(*be, a, a0);
      const double fd = (fs[0] - fs[1]) / 2;
      const double err = std::abs(fd - analytic) / (std::abs(analytic) + 1e-300);
      worst = std::max(worst, err);
      EXPECT_NEAR(fd, analytic, 0.02 * std::abs(analytic) + 1e-4)
          << "level " << level << ", direction " << dir;
      EXPECT_GT(std::abs(analytic), 1e-3)
          << "level " << level << ": the directional change must exceed the noise";
      std::printf("level %d direction %d: d = %.6e, central difference %.6e\n", level, dir, analytic, fd);
    }
  }
  std::printf("explain_backward vs central differences: worst relative difference %.2e\n", worst);
}

TEST(ExplainBackward, RefusesLevelsOutOfRange) {
  auto be = make_cpu_backend();
  DenseNet net(*be, DenseNetConfig::from_arch("densenet121", 14), 1, 64, 64, false);
  EXPECT_THROW(net.level_activations(5), Error);
  EXPECT_THROW(net.explain_buffer_floats(-1), Error);
  EXPECT_THROW(net.forward_from_level(7), Error);
}

// ---- against pytorch-grad-cam -------------------------------------------------------------------

struct CamFixture {
  std::string file = source_path("tests/fixtures/cam_methods_torch.h5");
  int64_t n = 2, s = 128, passes = 2;
  std::vector<float> input = read_h5_floats(file, "input"), classes = read_h5_floats(file, "classes"),
                     logits = read_h5_floats(file, "logits");
};

// The per-level reference is float64 PyTorch; ours runs in float32 through up to 88 convolutions and
// as many ReLU masks backward. A unit whose BN-ReLU input lies within float32 rounding of zero can
// flip its mask, and the gradient behind it changes outright: at dense block 2 (after block 3's 24
// layers) that moves a map by up to ~1e-3 relative. The fixture measures it on PyTorch itself
// (raw32: the same maps computed in float32), so each map's bound is twice PyTorch's own float32
// distance from float64, and at least 1e-5 (float32 rounding through the network where no mask
// flips: measured ~5e-7 at the final map and block 3). A wrong weighting, channel or path is off by
// O(1). Raw maps are compared before any scaling, so each method's weighting and channel sum are
// checked on their own.
void check_methods_against_grad_cam(Backend& be) {
  const CamFixture fx;
  DenseNet net(be, DenseNetConfig::from_arch("densenet121", 14), fx.n, fx.s, fx.s, /*trainable=*/false);
  load_test_weights(net);
  be.copy_to_device(net.input().data, fx.input.data(), sizeof(float) * fx.input.size());
  net.forward(false);
  ASSERT_LT(rel_error(net.get_logits(), fx.logits), 1e-4) << "the forward pass already differs from PyTorch";
  for (const std::string& method : app::cam_method_names()) {
    for (const std::string& layer : {std::string("final"), std::string("block3"), std::string("block2")}) {
      app::CamMaps cam(net, app::parse_cam_method(method), app::parse_cam_layer(layer, net), fx.s, fx.s);
      const auto want = read_h5_floats(fx.file, "raw/" + method + "/" + layer);  // (passes, N, h, w)
      const auto want32 = read_h5_floats(fx.file, "raw32/" + method + "/" + layer);
      const int64_t cells = cam.level_h(0) * cam.level_w(0);
      ASSERT_EQ(int64_t(want.size()), fx.passes * fx.n * cells) << method << " " << layer;
      for (int64_t j = 0; j < fx.passes; ++j) {
        std::vector<int> cls;
        for (int64_t i = 0; i < fx.n; ++i) cls.push_back(int(fx.classes[size_t(i * fx.passes + j)]));
        cam.compute(cls);
        const std::vector<float> ref(want.begin() + j * fx.n * cells, want.begin() + (j + 1) * fx.n * cells);
        const std::vector<float> ref32(want32.begin() + j * fx.n * cells,
                                       want32.begin() + (j + 1) * fx.n * cells);
        const double err = rel_error(cam.raw(0), ref), torch32 = rel_error(ref32, ref);
        const double bound = std::max(1e-5, 2 * torch32);
        std::printf(
            "%s %-9s %-6s classes %d/%d: raw map relative error %.2e (PyTorch float32: %.2e; against "
            "it: %.2e)\n",
            be.name().c_str(), method.c_str(), layer.c_str(), cls[0], cls[1], err, torch32,
            rel_error(cam.raw(0), ref32));
        EXPECT_LT(err, bound) << method << " at " << layer << ", classes " << cls[0] << "/" << cls[1];
        // Against PyTorch's own float32 maps the flips are (nearly) the same ones: measured <= 2e-5.
        EXPECT_LT(rel_error(cam.raw(0), ref32), 1e-4) << method << " at " << layer << " against float32";
        EXPECT_GT(*std::max_element(ref.begin(), ref.end()), 0.0f)
            << "a reference map that is all zero proves little";
      }
    }
    // Fused over the three levels: pytorch-grad-cam's own scaling, cv2's float32 resize and mean.
    app::CamMaps fused(net, app::parse_cam_method(method), app::parse_cam_layer("fuse", net), fx.s, fx.s);
    const auto want = read_h5_floats(fx.file, "fused/" + method);  // (passes, N, S, S) in [0, 1]
    const int64_t plane = fx.s * fx.s;
    for (int64_t j = 0; j < fx.passes; ++j) {
      std::vector<int> cls;
      for (int64_t i = 0; i < fx.n; ++i) cls.push_back(int(fx.classes[size_t(i * fx.passes + j)]));
      const auto got = fused.compute(cls);
      const std::vector<float> ref(want.begin() + j * fx.n * plane, want.begin() + (j + 1) * fx.n * plane);
      double worst = 0;
      for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::abs(got[i] - ref[i])));
      std::printf("%s %-9s fuse   classes %d/%d: max abs difference %.2e\n", be.name().c_str(),
                  method.c_str(), cls[0], cls[1], worst);
      // Maps in [0, 1]: the levels' float32 error above (up to ~1e-3 relative at block 2), carried
      // through two min-max scalings and averaged with the others, and cv2's float32 bilinear weights
      // (~1e-7): 2e-3 absolute.
      EXPECT_LT(worst, 2e-3) << method << " fused, classes " << cls[0] << "/" << cls[1];
    }
  }
}

TEST(CamMethods, EveryMethodAndLevelMatchesPytorchGradCamCpu) {
  auto be = make_cpu_backend();
  check_methods_against_grad_cam(*be);
}

TEST(CamMethods, EveryMethodAndLevelMatchesPytorchGradCamGpu) {
  CXR_REQUIRE_CUDA(gpu);
  check_methods_against_grad_cam(*gpu);
}

TEST(CamMethods, NamesAndLayersAreCheckedWithTheChoices) {
  auto be = make_cpu_backend();
  DenseNet net(*be, DenseNetConfig::from_arch("densenet121", 14), 1, 64, 64, false);
  EXPECT_EQ(app::parse_cam_layer("final", net), (std::vector<int>{4}));
  EXPECT_EQ(app::parse_cam_layer("block3", net), (std::vector<int>{2}));
  EXPECT_EQ(app::parse_cam_layer("block2", net), (std::vector<int>{1}));
  EXPECT_EQ(app::parse_cam_layer("fuse", net), (std::vector<int>{4, 2, 1}));
  for (const auto& m : app::cam_method_names()) EXPECT_EQ(app::cam_method_name(app::parse_cam_method(m)), m);
  try {
    app::parse_cam_method("scorecam");
    ADD_FAILURE() << "scorecam accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gradcam++"), std::string::npos) << e.what();
  }
  EXPECT_THROW(app::parse_cam_layer("block1", net), Error);
}

// ---- the command ----------------------------------------------------------------------------------

TEST(CamMethods, CliFusedLayerCamScoresAndFaithfulness) {
  using nlohmann::json;
  ScratchDir dir("cam_methods_cli");
  RunResult run = run_cxr(dir, "synth --out " + dir / "synth" + " --patients 6 --size 64 --seed 5");
  ASSERT_EQ(run.status, 0) << run.err;
  save_random_densenet121(dir / "model.h5", {}, 64, 9);
  // Four images with boxes, one batch: each class is a backward pass, then the faithfulness passes.
  std::vector<std::string> boxed;
  for (const io::BBox& b : io::read_bbox_csv(dir / "synth/BBox_List_2017.csv"))
    if (boxed.size() < 4 && std::find(boxed.begin(), boxed.end(), b.image) == boxed.end())
      boxed.push_back(b.image);
  ASSERT_EQ(boxed.size(), 4u);
  {
    std::ofstream list(dir / "boxed.txt");
    for (const auto& name : boxed) list << dir / ("synth/images/" + name) << "\n";
  }
  const std::string images = dir / "boxed.txt";
  const std::string base = "gradcam --weights " + dir / "model.h5" +
                           " --batch 4 --device cpu --quiet --boxes " + dir / "synth/BBox_List_2017.csv" +
                           " --top-k 1 ";
  run = run_cxr(
      dir, base + "--method layercam --layer fuse --faithfulness 10 --json --out " + dir / "cam " + images);
  ASSERT_EQ(run.status, 0) << run.err;
  const json r = json::parse(run.out);
  EXPECT_EQ(r["method"], "layercam");
  EXPECT_EQ(r["layer"], "fuse");
  EXPECT_EQ(r["levels"], json::parse("[[2, 2], [4, 4], [8, 8]]")) << "final, block3, block2 at 64 px";
  ASSERT_TRUE(r.contains("localisation")) << run.out.substr(0, 300);
  const int64_t pairs = r["localisation"]["pairs"].get<int64_t>();
  EXPECT_GT(pairs, 0);
  for (const char* key : {"pointing_game", "energy_pointing_game"}) {
    ASSERT_TRUE(r[key].is_number()) << key;
    EXPECT_GE(r[key].get<double>(), 0.0) << key;
    EXPECT_LE(r[key].get<double>(), 1.0) << key;
  }
  for (const char* t : {"0.1", "0.25", "0.5", "0.75", "0.9"}) EXPECT_TRUE(r["iobb_found"].contains(t)) << t;
  int64_t scored = 0;
  for (const json& m : r["maps"])
    if (m.contains("hit")) {
      ++scored;
      EXPECT_GE(m["energy"].get<double>(), 0.0);
      EXPECT_LE(m["iobb"].get<double>(), 1.0);
    }
  EXPECT_EQ(scored, pairs);
  const json& f = r["faithfulness"];
  EXPECT_EQ(f["pairs"].get<int64_t>(), int64_t(r["maps"].size())) << "every map is tested";
  EXPECT_TRUE(f["mean_drop_map"].is_number());
  EXPECT_TRUE(f["mean_drop_random"].is_number());

  // The table form prints the scores and the faithfulness line.
  run = run_cxr(dir,
                base + "--method gradcam++ --layer block2 --faithfulness 5 --out " + dir / "cam2 " + images);
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("faithfulness (gradcam++, block2)"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("overall"), std::string::npos) << run.out;

  // Bad choices: one line naming the choices, non-zero exit.
  run = run_cxr(dir, base + "--method scorecam --out " + dir / "cam3 " + images);
  EXPECT_NE(run.status, 0);
  EXPECT_NE(run.err.find("layercam"), std::string::npos) << run.err;
  run = run_cxr(dir, base + "--layer block1 --out " + dir / "cam3 " + images);
  EXPECT_NE(run.status, 0);
  EXPECT_NE(run.err.find("fuse"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace cxr::test
