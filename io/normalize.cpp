#include "io/normalize.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace cxr::io {

NormMode parse_norm_mode(const std::string& s) {
  if (s == "sample") return NormMode::Sample;
  if (s == "dataset") return NormMode::Dataset;
  if (s == "imagenet") return NormMode::ImageNet;
  throw Error("unknown normalisation '" + s + "': expected sample, dataset or imagenet");
}

const char* norm_mode_name(NormMode m) {
  switch (m) {
    case NormMode::Sample: return "sample";
    case NormMode::Dataset: return "dataset";
    case NormMode::ImageNet: return "imagenet";
  }
  return "?";
}

void pixel_mean_std(const uint8_t* images, int64_t n, int64_t hw, double* mean, double* std) {
  // A histogram makes the double sums exact and the pass cheap.
  uint64_t hist[256] = {};
  const int64_t total = n * hw;
  for (int64_t i = 0; i < total; ++i) ++hist[images[i]];
  double s = 0, s2 = 0;
  for (int v = 0; v < 256; ++v) s += static_cast<double>(hist[v]) * v, s2 += static_cast<double>(hist[v]) * v * v;
  const double m = total > 0 ? s / static_cast<double>(total) : 0.0;
  *mean = m;
  *std = total > 0 ? std::sqrt(std::max(0.0, s2 / static_cast<double>(total) - m * m)) : 0.0;
}

void normalize_cpu(float* out, const uint8_t* in, int64_t n, int64_t hw, const NormParams& p) {
  CXR_CHECK(n >= 0 && hw > 0, "n ", n, " hw ", hw);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* x = in + i * hw;
    float* y = out + i * 3 * hw;
    // y = x * a[c] + b[c] for channel c: one table lookup per pixel and channel.
    float a[3], b[3];
    if (p.mode == NormMode::ImageNet) {
      for (int c = 0; c < 3; ++c) a[c] = 1.f / (255.f * kImageNetStd[c]), b[c] = -kImageNetMean[c] / kImageNetStd[c];
    } else {
      double mean = p.mean, sd = p.std;
      if (p.mode == NormMode::Sample) pixel_mean_std(x, 1, hw, &mean, &sd);
      const double inv = 1.0 / (sd + kNormEps);
      for (int c = 0; c < 3; ++c) a[c] = static_cast<float>(inv), b[c] = static_cast<float>(-mean * inv);
    }
    float lut[3][256];
    for (int c = 0; c < 3; ++c)
      for (int v = 0; v < 256; ++v) lut[c][v] = static_cast<float>(v) * a[c] + b[c];
    for (int c = 0; c < 3; ++c) {
      float* yc = y + c * hw;
      const float* l = lut[c];
      for (int64_t j = 0; j < hw; ++j) yc[j] = l[x[j]];
    }
  }
}

}  // namespace cxr::io
