// CUDA backend against the CPU oracle: every op on fresh random inputs (seed printed on failure),
// outputs poisoned with NaN first so an unwritten element fails, strided channel-slice views where
// the network uses them, and a check that nothing outside an output view is touched. Without a GPU
// the GPU tests skip with the reason; the discovery test runs everywhere.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "engine/library_versions.h"
#include "test_util.h"

namespace cxr {
namespace {

using test::DeviceBuffer;
using test::fresh_seed;
using test::random_vector;
using test::rel_error;

// ---- tolerances (norm-wise relative error, test_util.h's rel_error) ------------------------------
// Exact: the kernel does the CPU's float operations in the CPU's order (comparisons, or sums of the
// same terms in the same order), so any difference is a bug.
constexpr double kExact = 0.0;
// One float rounding of a result both sides compute in double (BN statistics and backward, global
// average, sigmoid, BCE), or the same float formula where a host compiler may fuse a multiply-add:
// at most a few ulps (6e-8 each) per element.
constexpr double kRounding = 1e-6;
// FP32 with a different summation order (cuDNN / cuBLAS blocking vs OpenBLAS): errors grow like
// sqrt(K) * eps ~ 34 * 6e-8 = 2e-6 for K up to ~1150 terms; 2e-5 leaves room for the Winograd/FFT
// transforms cuDNN may pick under CUDNN_FMA_MATH, while any indexing error is O(1).
constexpr double kFp32Sum = 2e-5;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// A view (N, C, H, W) = channels [c0, c0 + C) of an (N, c_total, H, W) buffer: the dense-block
// layout (batch stride c_total*H*W > C*H*W). packed() is the plain tensor.
struct Layout {
  Shape shape;
  int64_t c_total = 0, c0 = 0;

  static Layout packed(Shape s) { return Layout{s, s.c, 0}; }
  static Layout slice(Shape s, int64_t c0, int64_t extra_after) {
    return Layout{s, c0 + s.c + extra_after, c0};
  }
  int64_t batch_stride() const { return c_total * shape.h * shape.w; }
  int64_t offset() const { return c0 * shape.h * shape.w; }
  size_t buffer_size() const { return size_t(shape.n * batch_stride()); }
  bool contains(size_t i) const {
    const int64_t r = int64_t(i) % batch_stride();
    return r >= offset() && r < offset() + shape.c * shape.h * shape.w;
  }
};

// The same values on the CPU and on the GPU.
struct Pair {
  Pair(Backend& cpu_be, Backend& gpu_be, const std::vector<float>& host)
      : cpu(cpu_be, host), gpu(gpu_be, host), initial(host) {}
  // A poisoned output of `count` floats.
  Pair(Backend& cpu_be, Backend& gpu_be, size_t count)
      : cpu(cpu_be, count), gpu(gpu_be, count), initial(count, kNaN) {
    cpu.poison();
    gpu.poison();
  }
  Tensor cpu_view(const Layout& l) const {
    return Tensor(cpu.data() + l.offset(), l.shape, l.batch_stride(), Device::CPU);
  }
  Tensor gpu_view(const Layout& l) const {
    return Tensor(gpu.data() + l.offset(), l.shape, l.batch_stride(), Device::CUDA);
  }

  DeviceBuffer cpu, gpu;
  std::vector<float> initial;  // the contents before the op
};

bool same_value(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// GPU vs CPU on the whole buffer.
void expect_close(const Pair& p, double tol, const std::string& what) {
  EXPECT_LE(rel_error(p.gpu.host(), p.cpu.host()), tol) << what;
}

// GPU vs CPU inside the view; outside it, the GPU buffer must still hold its initial contents.
void expect_view_close(const Pair& p, const Layout& l, double tol, const std::string& what) {
  const std::vector<float> g = p.gpu.host(), c = p.cpu.host();
  std::vector<float> gv, cv;
  size_t touched = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (l.contains(i)) {
      gv.push_back(g[i]);
      cv.push_back(c[i]);
    } else if (!same_value(g[i], p.initial[i])) {
      ++touched;
    }
  }
  EXPECT_LE(rel_error(gv, cv), tol) << what;
  EXPECT_EQ(touched, 0u) << what << ": elements outside the output view were written";
}

std::string seed_text(uint64_t seed) { return "seed " + std::to_string(seed); }

// ---- discovery (runs on every machine) ------------------------------------------------------------

TEST(CudaBackend, DiscoveryNeverThrowsAndExplainsAbsence) {
  if (!cuda_compiled()) GTEST_SKIP() << "built without the CUDA backend";
  int count = -1;
  EXPECT_NO_THROW(count = cuda_device_count());
  EXPECT_GE(count, 0);
  if (count == 0) {
    EXPECT_FALSE(cuda_unavailable_reason().empty());
    EXPECT_THROW(make_cuda_backend(0), Error);
  } else {
    EXPECT_TRUE(cuda_unavailable_reason().empty());
    EXPECT_THROW(make_cuda_backend(count), Error);  // out of range
  }
}

TEST(CudaBackend, NameMemoryAndCopies) {
  CXR_REQUIRE_CUDA(gpu);
  EXPECT_EQ(gpu->name().rfind("cuda:0 ", 0), 0u) << gpu->name();
  EXPECT_NE(gpu->name().find("(sm_"), std::string::npos) << gpu->name();
  EXPECT_NE(gpu->name().find(cuda_library_versions()), std::string::npos) << gpu->name();  // loaded vs compiled
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  const std::vector<float> v = random_vector(1000, seed);
  {
    DeviceBuffer b(*gpu, v);
    EXPECT_GE(gpu->peak_allocated_bytes(), v.size() * sizeof(float));
    // 64 MiB more than anything before: the device's measured peak must see it (Note [measured
    // device memory]; it also holds the context and the libraries' memory).
    const size_t before = gpu->measured_peak().bytes, big = size_t(64) << 20;
    DeviceBuffer large(*gpu, big / sizeof(float));
    const MeasuredMemory after = gpu->measured_peak();
    EXPECT_GE(after.bytes, before + big) << after.how;
    EXPECT_GE(after.bytes, gpu->peak_allocated_bytes()) << after.how;
    EXPECT_EQ(b.host(), v);  // round trip is a plain copy
    gpu->fill(b.data(), 2.5f, 1000);
    EXPECT_EQ(b.host(), std::vector<float>(1000, 2.5f));
  }
}

TEST(CudaBackend, ShapeErrorsNameTheShapes) {
  CXR_REQUIRE_CUDA(gpu);
  const Shape x{2, 3, 32, 32}, y{2, 8, 15, 15}, w{8, 3, 3, 3};  // 3x3/2 pad 1 gives 16, not 15
  const ConvGeom g{3, 2, 1};
  try {
    gpu->conv2d_forward(Tensor(nullptr, y, Device::CUDA), Tensor(nullptr, x, Device::CUDA), nullptr, w, g,
                        Workspace{});
    FAIL() << "inconsistent convolution shapes were accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(x.str()), std::string::npos) << msg;
    EXPECT_NE(msg.find(y.str()), std::string::npos) << msg;
  }
}

// ---- convolution ----------------------------------------------------------------------------------

struct ConvCase {
  const char* name;
  int64_t n, c, hw, k, kernel, stride, pad;
  bool sliced;  // x and y are channel slices of wider buffers (dense-block layout)
};
void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }  // for test names

class CudaConv : public ::testing::TestWithParam<ConvCase> {};

TEST_P(CudaConv, MatchesCpu) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const ConvCase& p = GetParam();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  const ConvGeom g{p.kernel, p.stride, p.pad};
  const Shape xs{p.n, p.c, p.hw, p.hw}, ys{p.n, p.k, g.out_size(p.hw), g.out_size(p.hw)},
      wsh{p.k, p.c, p.kernel, p.kernel};
  const Layout xl = p.sliced ? Layout::slice(xs, 5, 9) : Layout::packed(xs);
  const Layout yl = p.sliced ? Layout::slice(ys, 3, 7) : Layout::packed(ys);

  Pair x(*cpu, *gpu, random_vector(xl.buffer_size(), seed));
  Pair w(*cpu, *gpu, random_vector(size_t(wsh.numel()), seed + 1));
  Pair dy(*cpu, *gpu, random_vector(yl.buffer_size(), seed + 2));
  const size_t cpu_bytes = cpu->conv2d_workspace_bytes(ys, yl.batch_stride(), xs, xl.batch_stride(), wsh, g);
  const size_t gpu_bytes = gpu->conv2d_workspace_bytes(ys, yl.batch_stride(), xs, xl.batch_stride(), wsh, g);
  DeviceBuffer cpu_ws(*cpu, cpu_bytes / sizeof(float) + 1), gpu_ws(*gpu, gpu_bytes / sizeof(float) + 1);
  const Workspace cw{cpu_ws.data(), cpu_bytes}, gw{gpu_ws.data(), gpu_bytes};

  {
    Pair y(*cpu, *gpu, yl.buffer_size());
    cpu->conv2d_forward(y.cpu_view(yl), x.cpu_view(xl), w.cpu.data(), wsh, g, cw);
    gpu->conv2d_forward(y.gpu_view(yl), x.gpu_view(xl), w.gpu.data(), wsh, g, gw);
    expect_view_close(y, yl, kFp32Sum, "forward");
  }
  for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate}) {
    const bool acc = mode == GradMode::Accumulate;
    Pair dx = acc ? Pair(*cpu, *gpu, random_vector(xl.buffer_size(), seed + 3))
                  : Pair(*cpu, *gpu, xl.buffer_size());
    cpu->conv2d_backward_data(dx.cpu_view(xl), mode, dy.cpu_view(yl), w.cpu.data(), wsh, g, cw);
    gpu->conv2d_backward_data(dx.gpu_view(xl), mode, dy.gpu_view(yl), w.gpu.data(), wsh, g, gw);
    expect_view_close(dx, xl, kFp32Sum, acc ? "backward data (+=)" : "backward data (=)");

    Pair dw = acc ? Pair(*cpu, *gpu, random_vector(size_t(wsh.numel()), seed + 4))
                  : Pair(*cpu, *gpu, size_t(wsh.numel()));
    cpu->conv2d_backward_filter(dw.cpu.data(), mode, wsh, dy.cpu_view(yl), x.cpu_view(xl), g, cw);
    gpu->conv2d_backward_filter(dw.gpu.data(), mode, wsh, dy.gpu_view(yl), x.gpu_view(xl), g, gw);
    expect_close(dw, kFp32Sum, acc ? "backward filter (+=)" : "backward filter (=)");
  }
}

// DenseNet's three geometries: the 7x7/2 stem (odd input), the 3x3 growth conv (reduction over
// 128*9 = 1152 terms) and the 1x1 bottleneck, each packed and on channel slices.
INSTANTIATE_TEST_SUITE_P(DenseNetGeometries, CudaConv,
                         ::testing::Values(ConvCase{"stem7x7s2", 2, 3, 31, 16, 7, 2, 3, false},
                                           ConvCase{"stem7x7s2_sliced", 2, 3, 31, 16, 7, 2, 3, true},
                                           ConvCase{"growth3x3", 2, 128, 14, 32, 3, 1, 1, false},
                                           ConvCase{"growth3x3_sliced", 2, 128, 14, 32, 3, 1, 1, true},
                                           ConvCase{"bottleneck1x1", 2, 96, 9, 128, 1, 1, 0, false},
                                           ConvCase{"bottleneck1x1_sliced", 2, 96, 9, 128, 1, 1, 0, true}),
                         [](const ::testing::TestParamInfo<ConvCase>& param) {
                           return std::string(param.param.name);
                         });

// ---- batch normalisation ------------------------------------------------------------------------

class CudaBatchNorm : public ::testing::Test {
 protected:
  // x: channels [8, 32) of a 40-channel buffer; values around 2.5 so that a one-pass
  // E[x^2] - E[x]^2 variance would lose digits.
  const Shape s{4, 24, 9, 9};
  const Layout xl = Layout::slice(s, 8, 8);
  const int64_t C = s.c;
};

TEST_F(CudaBatchNorm, StatsAndRunningUpdate) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  Pair x(*cpu, *gpu, random_vector(xl.buffer_size(), seed, 1.5f, 3.5f));
  Pair mean(*cpu, *gpu, size_t(C)), invstd(*cpu, *gpu, size_t(C));
  Pair rmean(*cpu, *gpu, random_vector(size_t(C), seed + 1));
  Pair rvar(*cpu, *gpu, random_vector(size_t(C), seed + 2, 0.5f, 1.5f));
  const double count = double(s.n * s.h * s.w), eps = 1.001e-5, momentum = 0.99;
  const double correction = count / (count - 1);
  cpu->batchnorm_stats(mean.cpu.data(), invstd.cpu.data(), rmean.cpu.data(), rvar.cpu.data(), x.cpu_view(xl),
                       eps, momentum, correction);
  gpu->batchnorm_stats(mean.gpu.data(), invstd.gpu.data(), rmean.gpu.data(), rvar.gpu.data(), x.gpu_view(xl),
                       eps, momentum, correction);
  expect_close(mean, kRounding, "mean");
  expect_close(invstd, kRounding, "invstd");
  expect_close(rmean, kRounding, "running mean");
  expect_close(rvar, kRounding, "running var");

  // Without running statistics (null pointers skip the update).
  Pair mean2(*cpu, *gpu, size_t(C)), invstd2(*cpu, *gpu, size_t(C));
  cpu->batchnorm_stats(mean2.cpu.data(), invstd2.cpu.data(), nullptr, nullptr, x.cpu_view(xl), eps, momentum,
                       correction);
  gpu->batchnorm_stats(mean2.gpu.data(), invstd2.gpu.data(), nullptr, nullptr, x.gpu_view(xl), eps, momentum,
                       correction);
  expect_close(mean2, kRounding, "mean without running update");
  expect_close(invstd2, kRounding, "invstd without running update");

  // Inference statistics from the running ones.
  Pair imean(*cpu, *gpu, size_t(C)), iinvstd(*cpu, *gpu, size_t(C));
  cpu->batchnorm_inference_stats(imean.cpu.data(), iinvstd.cpu.data(), rmean.cpu.data(), rvar.cpu.data(), C,
                                 eps);
  gpu->batchnorm_inference_stats(imean.gpu.data(), iinvstd.gpu.data(), rmean.gpu.data(), rvar.gpu.data(), C,
                                 eps);
  expect_close(imean, kExact, "inference mean (a copy)");
  expect_close(iinvstd, kRounding, "inference invstd");

  // The running update alone, from the statistics computed above (shared-statistics BNs).
  cpu->batchnorm_running_update(rmean.cpu.data(), rvar.cpu.data(), mean2.cpu.data(), invstd2.cpu.data(), C, eps,
                                momentum, correction);
  gpu->batchnorm_running_update(rmean.gpu.data(), rvar.gpu.data(), mean2.gpu.data(), invstd2.gpu.data(), C, eps,
                                momentum, correction);
  expect_close(rmean, kRounding, "running mean, update alone");
  expect_close(rvar, kRounding, "running var, update alone");
}

// Few channels of many elements take the split statistics (Note [BN statistics over many blocks]):
// 32 channels of 8 x 40 x 40 = 12800 elements split whenever the GPU has 9 or more multiprocessors
// (4 blocks per multiprocessor > 32 channels, at most 12800 / 2048 = 6 chunks each). The CPU side
// is the same oracle as above, so the tolerance is the same one rounding.
TEST_F(CudaBatchNorm, StatsOfFewChannelsSplitOverBlocks) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  const Shape few{8, 32, 40, 40};
  const Layout fl = Layout::slice(few, 64, 0);  // a dense layer's new channels, at the end of its block
  Pair x(*cpu, *gpu, random_vector(fl.buffer_size(), seed, 1.5f, 3.5f));
  Pair mean(*cpu, *gpu, size_t(few.c)), invstd(*cpu, *gpu, size_t(few.c));
  Pair rmean(*cpu, *gpu, random_vector(size_t(few.c), seed + 1));
  Pair rvar(*cpu, *gpu, random_vector(size_t(few.c), seed + 2, 0.5f, 1.5f));
  const double count = double(few.n * few.h * few.w), correction = count / (count - 1);
  cpu->batchnorm_stats(mean.cpu.data(), invstd.cpu.data(), rmean.cpu.data(), rvar.cpu.data(), x.cpu_view(fl),
                       1.001e-5, 0.99, correction);
  gpu->batchnorm_stats(mean.gpu.data(), invstd.gpu.data(), rmean.gpu.data(), rvar.gpu.data(), x.gpu_view(fl),
                       1.001e-5, 0.99, correction);
  expect_close(mean, kRounding, "mean");
  expect_close(invstd, kRounding, "invstd");
  expect_close(rmean, kRounding, "running mean");
  expect_close(rvar, kRounding, "running var");
}

TEST_F(CudaBatchNorm, Apply) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  Pair gamma(*cpu, *gpu, random_vector(size_t(C), seed + 1, 0.5f, 1.5f));
  Pair beta(*cpu, *gpu, random_vector(size_t(C), seed + 2, -0.5f, 0.5f));
  Pair mean(*cpu, *gpu, random_vector(size_t(C), seed + 3, 2.0f, 3.0f));
  Pair invstd(*cpu, *gpu, random_vector(size_t(C), seed + 4, 0.5f, 2.0f));
  const Layout yl = Layout::slice(s, 2, 3);
  for (bool relu : {false, true})
    for (bool in_place : {false, true}) {
      const std::string what =
          std::string("apply relu=") + (relu ? "on" : "off") + (in_place ? " in place" : " out of place");
      Pair x(*cpu, *gpu, random_vector(xl.buffer_size(), seed, 1.5f, 3.5f));
      if (in_place) {
        cpu->batchnorm_apply(x.cpu_view(xl), x.cpu_view(xl), gamma.cpu.data(), beta.cpu.data(),
                             mean.cpu.data(), invstd.cpu.data(), relu);
        gpu->batchnorm_apply(x.gpu_view(xl), x.gpu_view(xl), gamma.gpu.data(), beta.gpu.data(),
                             mean.gpu.data(), invstd.gpu.data(), relu);
        expect_view_close(x, xl, kRounding, what);
      } else {
        Pair y(*cpu, *gpu, yl.buffer_size());
        cpu->batchnorm_apply(y.cpu_view(yl), x.cpu_view(xl), gamma.cpu.data(), beta.cpu.data(),
                             mean.cpu.data(), invstd.cpu.data(), relu);
        gpu->batchnorm_apply(y.gpu_view(yl), x.gpu_view(xl), gamma.gpu.data(), beta.gpu.data(),
                             mean.gpu.data(), invstd.gpu.data(), relu);
        expect_view_close(y, yl, kRounding, what);
      }
    }
}

TEST_F(CudaBatchNorm, Backward) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  const Layout dyl = Layout::slice(s, 0, 5), dxl = Layout::slice(s, 4, 0);
  Pair x(*cpu, *gpu, random_vector(xl.buffer_size(), seed, 1.5f, 3.5f));
  Pair dy(*cpu, *gpu, random_vector(dyl.buffer_size(), seed + 1));
  Pair gamma(*cpu, *gpu, random_vector(size_t(C), seed + 2, 0.5f, 1.5f));
  // The batch statistics of x, as in training; computed once on the CPU and given to both.
  std::vector<float> m, is;
  {
    DeviceBuffer cm(*cpu, size_t(C)), cis(*cpu, size_t(C));
    cpu->batchnorm_stats(cm.data(), cis.data(), nullptr, nullptr, x.cpu_view(xl), 1e-3, 0.99, 1.0);
    m = cm.host();
    is = cis.host();
  }
  Pair mean(*cpu, *gpu, m), invstd(*cpu, *gpu, is);
  for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate}) {
    const bool acc = mode == GradMode::Accumulate;
    Pair dx = acc ? Pair(*cpu, *gpu, random_vector(dxl.buffer_size(), seed + 3))
                  : Pair(*cpu, *gpu, dxl.buffer_size());
    Pair dgamma(*cpu, *gpu, size_t(C)), dbeta(*cpu, *gpu, size_t(C));
    cpu->batchnorm_backward(dx.cpu_view(dxl), mode, dgamma.cpu.data(), dbeta.cpu.data(), dy.cpu_view(dyl),
                            x.cpu_view(xl), gamma.cpu.data(), mean.cpu.data(), invstd.cpu.data());
    gpu->batchnorm_backward(dx.gpu_view(dxl), mode, dgamma.gpu.data(), dbeta.gpu.data(), dy.gpu_view(dyl),
                            x.gpu_view(xl), gamma.gpu.data(), mean.gpu.data(), invstd.gpu.data());
    const std::string tag = acc ? " (+=)" : " (=)";
    expect_view_close(dx, dxl, kRounding, "dx" + tag);
    expect_close(dgamma, kRounding, "dgamma" + tag);
    expect_close(dbeta, kRounding, "dbeta" + tag);

    // Fused with the ReLU (the mask recomputed from x): beta spread so that the ReLU cuts.
    Pair beta(*cpu, *gpu, random_vector(size_t(C), seed + 4, -1.0f, 1.0f));
    Pair rdx = acc ? Pair(*cpu, *gpu, random_vector(dxl.buffer_size(), seed + 5))
                   : Pair(*cpu, *gpu, dxl.buffer_size());
    Pair rdgamma(*cpu, *gpu, size_t(C)), rdbeta(*cpu, *gpu, size_t(C));
    cpu->batchnorm_relu_backward(rdx.cpu_view(dxl), mode, rdgamma.cpu.data(), rdbeta.cpu.data(), dy.cpu_view(dyl),
                                 x.cpu_view(xl), gamma.cpu.data(), beta.cpu.data(), mean.cpu.data(), invstd.cpu.data());
    gpu->batchnorm_relu_backward(rdx.gpu_view(dxl), mode, rdgamma.gpu.data(), rdbeta.gpu.data(), dy.gpu_view(dyl),
                                 x.gpu_view(xl), gamma.gpu.data(), beta.gpu.data(), mean.gpu.data(), invstd.gpu.data());
    expect_view_close(rdx, dxl, kRounding, "fused ReLU dx" + tag);
    expect_close(rdgamma, kRounding, "fused ReLU dgamma" + tag);
    expect_close(rdbeta, kRounding, "fused ReLU dbeta" + tag);
  }
}

TEST_F(CudaBatchNorm, SyncBackwardReduceAndApply) {
  // The synchronised backward's halves against the CPU oracle. The reduce rounds double sums once
  // (kRounding); the apply gets the same float sums on both sides (the CPU reduce's, as after an
  // all-reduce) and a global count three times the local one (as if two more processes had shares),
  // and computes each element in double before one rounding (kRounding: nvcc may fuse the double
  // multiply-adds, which moves a result by at most one float ulp).
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  const Layout dyl = Layout::slice(s, 0, 5), dxl = Layout::slice(s, 4, 0);
  Pair x(*cpu, *gpu, random_vector(xl.buffer_size(), seed, 1.5f, 3.5f));
  Pair dy(*cpu, *gpu, random_vector(dyl.buffer_size(), seed + 1));
  Pair gamma(*cpu, *gpu, random_vector(size_t(C), seed + 2, 0.5f, 1.5f));
  Pair beta(*cpu, *gpu, random_vector(size_t(C), seed + 3, -1.0f, 1.0f));  // spread so that the ReLU cuts
  std::vector<float> m, is;
  {
    DeviceBuffer cm(*cpu, size_t(C)), cis(*cpu, size_t(C));
    cpu->batchnorm_stats(cm.data(), cis.data(), nullptr, nullptr, x.cpu_view(xl), 1e-3, 0.99, 1.0);
    m = cm.host();
    is = cis.host();
  }
  Pair mean(*cpu, *gpu, m), invstd(*cpu, *gpu, is);
  const double count = 3.0 * double(s.n * s.h * s.w);
  for (bool relu : {false, true}) {
    const std::string r = relu ? " relu" : "";
    Pair sum_dyx(*cpu, *gpu, size_t(C)), sum_dy(*cpu, *gpu, size_t(C));
    cpu->batchnorm_backward_reduce(sum_dyx.cpu.data(), sum_dy.cpu.data(), dy.cpu_view(dyl), x.cpu_view(xl),
                                   gamma.cpu.data(), beta.cpu.data(), mean.cpu.data(), invstd.cpu.data(), relu);
    gpu->batchnorm_backward_reduce(sum_dyx.gpu.data(), sum_dy.gpu.data(), dy.gpu_view(dyl), x.gpu_view(xl),
                                   gamma.gpu.data(), beta.gpu.data(), mean.gpu.data(), invstd.gpu.data(), relu);
    expect_close(sum_dyx, kRounding, "sum_dy_xhat" + r);
    expect_close(sum_dy, kRounding, "sum_dy" + r);
    // The GPU's fused backward adds the same terms in the same block order: its dgamma/dbeta are the
    // reduce's sums exactly.
    {
      DeviceBuffer fdx(*gpu, dxl.buffer_size()), fdgamma(*gpu, size_t(C)), fdbeta(*gpu, size_t(C));
      const Tensor fdxv(fdx.data() + dxl.offset(), dxl.shape, dxl.batch_stride(), Device::CUDA);
      if (relu)
        gpu->batchnorm_relu_backward(fdxv, GradMode::Overwrite, fdgamma.data(), fdbeta.data(), dy.gpu_view(dyl),
                                     x.gpu_view(xl), gamma.gpu.data(), beta.gpu.data(), mean.gpu.data(),
                                     invstd.gpu.data());
      else
        gpu->batchnorm_backward(fdxv, GradMode::Overwrite, fdgamma.data(), fdbeta.data(), dy.gpu_view(dyl),
                                x.gpu_view(xl), gamma.gpu.data(), mean.gpu.data(), invstd.gpu.data());
      EXPECT_EQ(fdgamma.host(), sum_dyx.gpu.host()) << "fused dgamma vs sum_dy_xhat" << r;
      EXPECT_EQ(fdbeta.host(), sum_dy.gpu.host()) << "fused dbeta vs sum_dy" << r;
    }
    // The apply reads the CPU's sums on both sides.
    Pair sums_dyx(*cpu, *gpu, sum_dyx.cpu.host()), sums_dy(*cpu, *gpu, sum_dy.cpu.host());
    for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate}) {
      const bool acc = mode == GradMode::Accumulate;
      const std::string tag = r + (acc ? " (+=)" : " (=)");
      Pair dx = acc ? Pair(*cpu, *gpu, random_vector(dxl.buffer_size(), seed + 4)) : Pair(*cpu, *gpu, dxl.buffer_size());
      cpu->batchnorm_backward_apply(dx.cpu_view(dxl), mode, dy.cpu_view(dyl), x.cpu_view(xl), gamma.cpu.data(),
                                    beta.cpu.data(), mean.cpu.data(), invstd.cpu.data(), sums_dyx.cpu.data(),
                                    sums_dy.cpu.data(), count, relu);
      gpu->batchnorm_backward_apply(dx.gpu_view(dxl), mode, dy.gpu_view(dyl), x.gpu_view(xl), gamma.gpu.data(),
                                    beta.gpu.data(), mean.gpu.data(), invstd.gpu.data(), sums_dyx.gpu.data(),
                                    sums_dy.gpu.data(), count, relu);
      expect_view_close(dx, dxl, kRounding, "apply dx" + tag);
    }
    // dx aliasing dy (in place).
    Pair dyi(*cpu, *gpu, dy.initial);
    cpu->batchnorm_backward_apply(dyi.cpu_view(dyl), GradMode::Overwrite, dyi.cpu_view(dyl), x.cpu_view(xl),
                                  gamma.cpu.data(), beta.cpu.data(), mean.cpu.data(), invstd.cpu.data(),
                                  sums_dyx.cpu.data(), sums_dy.cpu.data(), count, relu);
    gpu->batchnorm_backward_apply(dyi.gpu_view(dyl), GradMode::Overwrite, dyi.gpu_view(dyl), x.gpu_view(xl),
                                  gamma.gpu.data(), beta.gpu.data(), mean.gpu.data(), invstd.gpu.data(),
                                  sums_dyx.gpu.data(), sums_dy.gpu.data(), count, relu);
    expect_view_close(dyi, dyl, kRounding, "apply dx in place of dy" + r);
  }
}

TEST_F(CudaBatchNorm, FrozenReluBackward) {
  // Frozen (running) statistics, the explanation's backward: element-wise, so the GPU must give the
  // CPU's floats exactly (the same _rn operations, no reduction).
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  const Layout dyl = Layout::slice(s, 0, 5), dxl = Layout::slice(s, 4, 0);
  Pair x(*cpu, *gpu, random_vector(xl.buffer_size(), seed, -1.0f, 3.0f));
  Pair dy(*cpu, *gpu, random_vector(dyl.buffer_size(), seed + 1));
  Pair gamma(*cpu, *gpu, random_vector(size_t(C), seed + 2, 0.5f, 1.5f));
  Pair beta(*cpu, *gpu, random_vector(size_t(C), seed + 3, -1.0f, 1.0f));
  Pair mean(*cpu, *gpu, random_vector(size_t(C), seed + 4, 0.0f, 2.0f));
  Pair invstd(*cpu, *gpu, random_vector(size_t(C), seed + 5, 0.5f, 2.0f));
  for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate}) {
    const bool acc = mode == GradMode::Accumulate;
    Pair dx = acc ? Pair(*cpu, *gpu, random_vector(dxl.buffer_size(), seed + 6))
                  : Pair(*cpu, *gpu, dxl.buffer_size());
    cpu->batchnorm_relu_backward_frozen(dx.cpu_view(dxl), mode, dy.cpu_view(dyl), x.cpu_view(xl), gamma.cpu.data(),
                                        beta.cpu.data(), mean.cpu.data(), invstd.cpu.data());
    gpu->batchnorm_relu_backward_frozen(dx.gpu_view(dxl), mode, dy.gpu_view(dyl), x.gpu_view(xl), gamma.gpu.data(),
                                        beta.gpu.data(), mean.gpu.data(), invstd.gpu.data());
    expect_view_close(dx, dxl, kExact, acc ? "frozen dx (+=)" : "frozen dx (=)");
  }
}

// ---- element-wise ---------------------------------------------------------------------------------

TEST(CudaElementwise, Relu) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  const Shape s{3, 10, 7, 7};
  const Layout xl = Layout::slice(s, 6, 2), yl = Layout::packed(s);
  Pair x(*cpu, *gpu, random_vector(xl.buffer_size(), seed));
  Pair y(*cpu, *gpu, yl.buffer_size());
  cpu->relu_forward(y.cpu_view(yl), x.cpu_view(xl));
  gpu->relu_forward(y.gpu_view(yl), x.gpu_view(xl));
  expect_view_close(y, yl, kExact, "relu forward");

  // In place on the slice.
  cpu->relu_forward(x.cpu_view(xl), x.cpu_view(xl));
  gpu->relu_forward(x.gpu_view(xl), x.gpu_view(xl));
  expect_view_close(x, xl, kExact, "relu forward in place");

  // Backward with dx aliasing dy; y = relu output (has exact zeros).
  Pair g(*cpu, *gpu, random_vector(yl.buffer_size(), seed + 1));
  cpu->relu_backward(g.cpu_view(yl), g.cpu_view(yl), y.cpu_view(yl));
  gpu->relu_backward(g.gpu_view(yl), g.gpu_view(yl), y.gpu_view(yl));
  expect_view_close(g, yl, kExact, "relu backward in place");
}

// ---- pooling --------------------------------------------------------------------------------------

// Values on a coarse grid (7 levels in [-1, 1]) so that windows hold ties, and negative windows next
// to the padding show whether a padded position ever wins.
std::vector<float> tied_values(size_t n, uint64_t seed) {
  std::vector<float> v = random_vector(n, seed);
  for (float& a : v) a = std::round(a * 3.0f) / 3.0f;
  return v;
}

TEST(CudaPool, MaxPool3x3Stride2Pad1) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const PoolGeom g{3, 2, 1};
  for (int64_t hw : {15, 16}) {
    const uint64_t seed = fresh_seed();
    SCOPED_TRACE(seed_text(seed) + ", H = W = " + std::to_string(hw));
    const Shape xs{2, 5, hw, hw}, ys{2, 5, g.out_size(hw), g.out_size(hw)};
    const Layout xl = Layout::slice(xs, 2, 1), yl = Layout::packed(ys);
    Pair x(*cpu, *gpu, tied_values(xl.buffer_size(), seed));
    Pair y(*cpu, *gpu, yl.buffer_size());
    cpu->maxpool_forward(y.cpu_view(yl), x.cpu_view(xl), g);
    gpu->maxpool_forward(y.gpu_view(yl), x.gpu_view(xl), g);
    expect_view_close(y, yl, kExact, "maxpool forward");

    Pair dy(*cpu, *gpu, random_vector(yl.buffer_size(), seed + 1));
    Pair dx(*cpu, *gpu, xl.buffer_size());
    cpu->maxpool_backward(dx.cpu_view(xl), dy.cpu_view(yl), x.cpu_view(xl), g);
    gpu->maxpool_backward(dx.gpu_view(xl), dy.gpu_view(yl), x.gpu_view(xl), g);
    // Exact: the same first-maximum rule, and each dx sums its windows' dy in the CPU's order.
    expect_view_close(dx, xl, kExact, "maxpool backward");
  }
}

TEST(CudaPool, AvgPool2x2Stride2OddSizes) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const PoolGeom g{2, 2, 0};
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  const Shape xs{2, 6, 15, 13}, ys{2, 6, g.out_size(15), g.out_size(13)};  // last row/column unused
  const Layout xl = Layout::slice(xs, 1, 2), yl = Layout::slice(ys, 3, 0);
  Pair x(*cpu, *gpu, random_vector(xl.buffer_size(), seed));
  Pair y(*cpu, *gpu, yl.buffer_size());
  cpu->avgpool_forward(y.cpu_view(yl), x.cpu_view(xl), g);
  gpu->avgpool_forward(y.gpu_view(yl), x.gpu_view(xl), g);
  expect_view_close(y, yl, kRounding, "avgpool forward");

  Pair dy(*cpu, *gpu, random_vector(yl.buffer_size(), seed + 1));
  Pair dx(*cpu, *gpu, xl.buffer_size());
  cpu->avgpool_backward(dx.cpu_view(xl), dy.cpu_view(yl), g);
  gpu->avgpool_backward(dx.gpu_view(xl), dy.gpu_view(yl), g);
  expect_view_close(dx, xl, kRounding, "avgpool backward (uncovered positions 0)");
}

TEST(CudaPool, GlobalAvgPool) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  const Shape xs{3, 40, 7, 7}, ys{3, 40, 1, 1};
  const Layout xl = Layout::slice(xs, 0, 4), yl = Layout::packed(ys);
  Pair x(*cpu, *gpu, random_vector(xl.buffer_size(), seed));
  Pair y(*cpu, *gpu, yl.buffer_size());
  cpu->global_avgpool_forward(y.cpu_view(yl), x.cpu_view(xl));
  gpu->global_avgpool_forward(y.gpu_view(yl), x.gpu_view(xl));
  expect_view_close(y, yl, kRounding, "global avgpool forward");

  Pair dy(*cpu, *gpu, random_vector(yl.buffer_size(), seed + 1));
  Pair dx(*cpu, *gpu, xl.buffer_size());
  cpu->global_avgpool_backward(dx.cpu_view(xl), dy.cpu_view(yl));
  gpu->global_avgpool_backward(dx.gpu_view(xl), dy.gpu_view(yl));
  expect_view_close(dx, xl, kExact, "global avgpool backward (one float division)");
}

// ---- dense layer and head -------------------------------------------------------------------------

TEST(CudaDense, ForwardBackward) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  const int64_t n = 5, in = 1024, out = 14;  // DenseNet121's head
  Pair x(*cpu, *gpu, random_vector(size_t(n * in), seed));
  Pair kernel(*cpu, *gpu, random_vector(size_t(in * out), seed + 1));
  Pair bias(*cpu, *gpu, random_vector(size_t(out), seed + 2));
  Pair y(*cpu, *gpu, size_t(n * out));
  cpu->dense_forward(y.cpu.data(), x.cpu.data(), kernel.cpu.data(), bias.cpu.data(), n, in, out);
  gpu->dense_forward(y.gpu.data(), x.gpu.data(), kernel.gpu.data(), bias.gpu.data(), n, in, out);
  expect_close(y, kFp32Sum, "dense forward (K = 1024)");

  Pair dy(*cpu, *gpu, random_vector(size_t(n * out), seed + 3));
  for (bool with_dx : {true, false}) {
    Pair dx(*cpu, *gpu, size_t(n * in));
    Pair dkernel(*cpu, *gpu, size_t(in * out)), dbias(*cpu, *gpu, size_t(out));
    cpu->dense_backward(with_dx ? dx.cpu.data() : nullptr, dkernel.cpu.data(), dbias.cpu.data(),
                        dy.cpu.data(), x.cpu.data(), kernel.cpu.data(), n, in, out);
    gpu->dense_backward(with_dx ? dx.gpu.data() : nullptr, dkernel.gpu.data(), dbias.gpu.data(),
                        dy.gpu.data(), x.gpu.data(), kernel.gpu.data(), n, in, out);
    const std::string tag = with_dx ? "" : " (dx skipped)";
    if (with_dx)
      expect_close(dx, kFp32Sum, "dense dx (K = 14)");
    else
      EXPECT_TRUE(std::isnan(dx.gpu.host()[0])) << "dx written although null was passed";
    expect_close(dkernel, kFp32Sum, "dense dkernel (K = 5)" + tag);
    expect_close(dbias, kRounding, "dense dbias (double sum)" + tag);
  }
}

TEST(CudaHead, Sigmoid) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  Pair x(*cpu, *gpu, random_vector(1000, seed, -30.0f, 30.0f));
  Pair y(*cpu, *gpu, size_t(1000));
  cpu->sigmoid_forward(y.cpu.data(), x.cpu.data(), 1000);
  gpu->sigmoid_forward(y.gpu.data(), x.gpu.data(), 1000);
  expect_close(y, kRounding, "sigmoid");
}

TEST(CudaHead, WeightedBce) {
  CXR_REQUIRE_CUDA(gpu);
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed_text(seed));
  const int64_t n = 8, k = 14;
  // Logits up to |z| = 40: log(1 - sigmoid(z)) computed naively would be -inf there.
  Pair z(*cpu, *gpu, random_vector(size_t(n * k), seed, -40.0f, 40.0f));
  std::vector<float> labels = random_vector(size_t(n * k), seed + 1, 0.0f, 1.0f);
  for (float& l : labels) l = l < 0.3f ? 1.0f : 0.0f;
  Pair y(*cpu, *gpu, labels);
  Pair w_pos(*cpu, *gpu, random_vector(size_t(k), seed + 2, 0.5f, 5.0f));
  Pair w_neg(*cpu, *gpu, random_vector(size_t(k), seed + 3, 0.5f, 1.5f));
  Pair loss(*cpu, *gpu, size_t(1)), dz(*cpu, *gpu, size_t(n * k));
  cpu->weighted_bce(loss.cpu.data(), dz.cpu.data(), z.cpu.data(), y.cpu.data(), w_pos.cpu.data(),
                    w_neg.cpu.data(), n, k);
  gpu->weighted_bce(loss.gpu.data(), dz.gpu.data(), z.gpu.data(), y.gpu.data(), w_pos.gpu.data(),
                    w_neg.gpu.data(), n, k);
  EXPECT_TRUE(std::isfinite(loss.gpu.host()[0]));
  expect_close(loss, kRounding, "loss");
  expect_close(dz, kRounding, "dz");
}

}  // namespace
}  // namespace cxr
