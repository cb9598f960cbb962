#include "io/normalize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// Integer sums make the statistics exact (as the histogram they replace) and the pass vectorisable:
// sum x <= 255 n, sum x^2 <= 65025 n, both far inside uint64 for any dataset.
void pixel_mean_std(const uint8_t* images, int64_t n, int64_t hw, double* mean, double* std) {
  const int64_t total = n * hw;
  uint64_t s = 0, s2 = 0;
  constexpr int64_t kBlock = 1 << 16;  // 32-bit partial sums: 65536 * 65025 < 2^32
  for (int64_t i0 = 0; i0 < total; i0 += kBlock) {
    const int64_t i1 = std::min(total, i0 + kBlock);
    uint32_t bs = 0, bs2 = 0;
    for (int64_t i = i0; i < i1; ++i) {
      const uint32_t v = images[i];
      bs += v, bs2 += v * v;
    }
    s += bs, s2 += bs2;
  }
  const double m = total > 0 ? static_cast<double>(s) / static_cast<double>(total) : 0.0;
  *mean = m;
  *std = total > 0 ? std::sqrt(std::max(0.0, static_cast<double>(s2) / static_cast<double>(total) - m * m)) : 0.0;
}

void norm_coefficients(const NormParams& p, const uint8_t* image, int64_t hw, float a[3], float b[3]) {
  if (p.mode != NormMode::Sample) return norm_fixed_coefficients(p, a, b);
  double mean = 0, sd = 0;
  pixel_mean_std(image, 1, hw, &mean, &sd);
  const double inv = 1.0 / (sd + kNormEps);
  for (int c = 0; c < 3; ++c) a[c] = static_cast<float>(inv), b[c] = static_cast<float>(-mean * inv);
}

namespace {

// y_c = x * a[c] + b[c] for the 3 channels: a product then a sum, each rounded (the CUDA kernel
// uses __fmul_rn/__fadd_rn). The outputs (12 bytes per pixel, 1.2 MB per 320x320 image) are far
// larger than the caches, so on x86 they are written with streaming stores, which skip reading each
// destination line first (the loader's images per CPU-second rose ~1.8x with them); the arithmetic
// is the same either way.
void apply3(float* y, const uint8_t* x, int64_t hw, const float a[3], const float b[3]) {
  int64_t j0 = 0;
#if defined(__SSE2__)
  const bool aligned = hw % 4 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0;
  if (aligned) {
    const __m128 a0 = _mm_set1_ps(a[0]), a1 = _mm_set1_ps(a[1]), a2 = _mm_set1_ps(a[2]);
    const __m128 b0 = _mm_set1_ps(b[0]), b1 = _mm_set1_ps(b[1]), b2 = _mm_set1_ps(b[2]);
    const __m128i zero = _mm_setzero_si128();
    float* y0 = y;
    float* y1 = y + hw;
    float* y2 = y + 2 * hw;
    for (; j0 + 16 <= hw; j0 += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + j0));
      const __m128i lo = _mm_unpacklo_epi8(v, zero), hi = _mm_unpackhi_epi8(v, zero);
      const __m128 f[4] = {_mm_cvtepi32_ps(_mm_unpacklo_epi16(lo, zero)), _mm_cvtepi32_ps(_mm_unpackhi_epi16(lo, zero)),
                           _mm_cvtepi32_ps(_mm_unpacklo_epi16(hi, zero)), _mm_cvtepi32_ps(_mm_unpackhi_epi16(hi, zero))};
      for (int q = 0; q < 4; ++q) {
        _mm_stream_ps(y0 + j0 + 4 * q, _mm_add_ps(_mm_mul_ps(f[q], a0), b0));
        _mm_stream_ps(y1 + j0 + 4 * q, _mm_add_ps(_mm_mul_ps(f[q], a1), b1));
        _mm_stream_ps(y2 + j0 + 4 * q, _mm_add_ps(_mm_mul_ps(f[q], a2), b2));
      }
    }
    _mm_sfence();  // streaming stores are weakly ordered: publish them before the batch is handed over
  }
#endif
  for (int c = 0; c < 3; ++c) {
    float* yc = y + c * hw;
    const float ac = a[c], bc = b[c];
    for (int64_t j = j0; j < hw; ++j) yc[j] = static_cast<float>(x[j]) * ac + bc;
  }
}

}  // namespace

void normalize_cpu(float* out, const uint8_t* in, int64_t n, int64_t hw, const NormParams& p) {
  CXR_CHECK(n >= 0 && hw > 0, "n ", n, " hw ", hw);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* x = in + i * hw;
    float a[3], b[3];
    norm_coefficients(p, x, hw, a, b);
    apply3(out + i * 3 * hw, x, hw, a, b);
  }
}

}  // namespace cxr::io
