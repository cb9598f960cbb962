// The CUDA normalisation kernel against its CPU twin (io::normalize_cpu) on fresh random images with
// poisoned outputs, and the loader's GPU path (pinned host buffers, asynchronous upload, GPU
// normalisation) against the CPU loader. Skipped with a message without a GPU or without CUDA.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "io/loader.h"
#include "io/normalize.h"
#include "io/packed.h"
#include "tests/test_data_util.h"
#include "tests/test_util.h"

#ifdef CXR_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/normalize_cuda.h"
#endif

namespace cxr::io {
namespace {

#ifdef CXR_HAVE_CUDA

// Images of varied statistics: uniform noise, a dark skewed image, a constant image (std 0: the
// 1e-7 epsilon path) and smooth gradients.
std::vector<uint8_t> random_images(int64_t n, int64_t hw, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<uint8_t> v(static_cast<size_t>(n * hw));
  for (int64_t i = 0; i < n; ++i) {
    uint8_t* x = v.data() + i * hw;
    const int kind = static_cast<int>(i % 4);
    const int c = static_cast<int>(g() % 256);
    for (int64_t j = 0; j < hw; ++j) {
      const uint32_t r = static_cast<uint32_t>(g());
      x[j] = kind == 0   ? static_cast<uint8_t>(r)
             : kind == 1 ? static_cast<uint8_t>((r % 40) * (r % 7) / 6)
             : kind == 2 ? static_cast<uint8_t>(c)
                         : static_cast<uint8_t>((j * 255 / hw + r % 3) & 255);
    }
  }
  return v;
}

// Runs normalize_gpu on `in` and returns the output copied back (poisoned with NaN beforehand).
std::vector<float> run_gpu(CudaBackend& be, const std::vector<uint8_t>& in, int64_t n, int64_t hw, const NormParams& p) {
  void* d_in = be.allocate(in.size());
  float* d_out = static_cast<float*>(be.allocate(static_cast<size_t>(n * 3 * hw) * sizeof(float)));
  be.copy_to_device(d_in, in.data(), in.size());
  be.fill(d_out, std::nanf(""), n * 3 * hw);
  cuda::normalize_gpu(d_out, static_cast<const uint8_t*>(d_in), n, hw, p, be.stream());
  std::vector<float> out(static_cast<size_t>(n * 3 * hw));
  be.copy_to_host(out.data(), d_out, out.size() * sizeof(float));
  be.synchronize();
  be.release(d_in);
  be.release(d_out);
  return out;
}

#endif  // CXR_HAVE_CUDA

TEST(DataNormalizeGpu, MatchesCpuAllModes) {
#ifndef CXR_HAVE_CUDA
  GTEST_SKIP() << "built without CUDA: the normalisation kernel is not compiled";
#else
  CXR_REQUIRE_CUDA(backend);
  auto& be = dynamic_cast<CudaBackend&>(*backend);
  const uint64_t seed = cxr::test::fresh_seed();
  // 320x320 as trained, and an odd size that is no multiple of the block or of 4.
  for (auto [n, hw] : {std::pair<int64_t, int64_t>{9, 320 * 320}, {6, 37 * 41}}) {
    const std::vector<uint8_t> in = random_images(n, hw, seed + hw);
    for (NormMode mode : {NormMode::Sample, NormMode::Dataset, NormMode::ImageNet}) {
      const NormParams p{mode, 123.25f, 57.5f};
      std::vector<float> cpu(static_cast<size_t>(n * 3 * hw), std::nanf(""));
      normalize_cpu(cpu.data(), in.data(), n, hw, p);
      const std::vector<float> gpu = run_gpu(be, in, n, hw, p);
      // Both sides use the same float coefficients and a rounded product then a rounded sum, so the
      // results are expected to be identical; 1e-6 relative allows one rounding of a CPU build that
      // contracts x * a + b into an FMA. A NaN (an element the kernel did not write) fails.
      double max_err = 0;
      for (size_t i = 0; i < cpu.size(); ++i) {
        const double err = std::fabs(double(gpu[i]) - double(cpu[i])) / std::max(1.0, std::fabs(double(cpu[i])));
        ASSERT_LE(err, 1e-6) << norm_mode_name(mode) << " element " << i << " gpu " << gpu[i] << " cpu " << cpu[i]
                             << " (seed " << seed << ")";
        max_err = std::max(max_err, err);
      }
      RecordProperty(std::string("max_rel_err_") + norm_mode_name(mode) + "_" + std::to_string(hw), std::to_string(max_err));
    }
  }
#endif
}

TEST(DataNormalizeGpu, LoaderUploadMatchesCpuLoader) {
#ifndef CXR_HAVE_CUDA
  GTEST_SKIP() << "built without CUDA: the pinned allocator and the asynchronous upload are not compiled";
#else
  CXR_REQUIRE_CUDA(backend);
  auto& be = dynamic_cast<CudaBackend&>(*backend);
  // A packed file of 23 random 40x40 images (batches of 4: a last partial batch of 3).
  cxr::test::ScratchDir dir("gpu_loader");
  const int S = 40;
  const int64_t n = 23;
  const uint64_t seed = cxr::test::fresh_seed();
  const std::vector<uint8_t> pixels = random_images(n, S * S, seed);
  std::vector<LabelRow> rows(n);
  for (int64_t i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "%08d_000.png", static_cast<int>(i + 1));
    rows[i].image = name, rows[i].patient_id = i + 1, rows[i].labels[i % kNumClasses] = 1;
  }
  const std::string path = dir / "gpu.h5";
  {
    PackedMeta meta;
    meta.image_size = S;
    PackedWriter w(path, rows, std::vector<Split>(n, Split::Train), meta);
    for (int64_t i = 0; i < n; ++i) w.write_image(i, pixels.data() + i * S * S);
    w.finish();
  }
  PackedDataset data(path);
  const NormParams norm{NormMode::Sample, 0.f, 1.f};
  LoaderOptions o = LoaderOptions::train(4, seed);
  o.norm = norm;
  Loader loader(data, cuda::gpu_loader_options(o));
  cuda::BatchUploader up(4, S, norm, be.stream());
  const int64_t hw = S * S;
  std::vector<float> got(static_cast<size_t>(4 * 3 * hw)), want(got.size()), labels(4 * kNumClasses);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    up.start_epoch(loader, epoch);
    std::multiset<int64_t> seen;
    int64_t batches = 0;
    while (const cuda::DeviceBatch* b = up.next(loader)) {
      ASSERT_EQ(b->host->input, nullptr) << "a GPU loader must leave normalisation to the GPU";
      const int64_t k = b->size;
      be.copy_to_host(got.data(), b->input, static_cast<size_t>(k * 3 * hw) * sizeof(float));
      be.copy_to_host(labels.data(), b->labels, static_cast<size_t>(k * kNumClasses) * sizeof(float));
      be.synchronize();
      normalize_cpu(want.data(), b->host->pixels, k, hw, norm);
      for (int64_t i = 0; i < k * 3 * hw; ++i)
        ASSERT_LE(std::fabs(got[i] - want[i]), 1e-6 * std::max(1.0f, std::fabs(want[i])))
            << "epoch " << epoch << " batch " << batches << " element " << i << " (seed " << seed << ")";
      for (int64_t i = 0; i < k * kNumClasses; ++i) ASSERT_EQ(labels[i], b->host->labels[i]);
      for (int64_t i = 0; i < k; ++i) seen.insert(b->host->indices[i]);
      ++batches;
    }
    EXPECT_EQ(batches, 6);
    EXPECT_EQ(seen.size(), static_cast<size_t>(n));
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), static_cast<size_t>(n));
  }
#endif
}

}  // namespace
}  // namespace cxr::io
