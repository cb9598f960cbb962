// Normalisation fused with uint8 -> float conversion and grey -> 3-channel replication: the CPU
// twin (and oracle) of the CUDA kernel. The same mode applies to every split.
//   sample:   y = (x - mean_i) / (std_i + 1e-7), mean_i/std_i of image i (population std), x in [0, 255]
//   dataset:  y = (x - mean) / (std + 1e-7), mean/std given (of the training set, x in [0, 255])
//   imagenet: y = (x / 255 - m_c) / s_c, m = (0.485, 0.456, 0.406), s = (0.229, 0.224, 0.225)
// (1e-7 as Keras' samplewise/featurewise_std_normalization, the seed's choice.)
#pragma once
#include <cstdint>
#include <string>

namespace cxr::io {

enum class NormMode { Sample, Dataset, ImageNet };

NormMode parse_norm_mode(const std::string& s);  // "sample" | "dataset" | "imagenet"
const char* norm_mode_name(NormMode m);

// Plain-old-data so that the same struct can be passed to a CUDA kernel by value.
struct NormParams {
  NormMode mode = NormMode::Sample;
  float mean = 0.f;  // dataset mode, pixel scale [0, 255]
  float std = 1.f;
};

inline constexpr float kNormEps = 1e-7f;
inline constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
inline constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

// out: (n, 3, hw) float, written (=); in: (n, hw) uint8. hw = S * S. Per-image statistics exact
// (integer sums), mean and std in double; then y = float(x) * a[c] + b[c] with the float coefficients
// of norm_coefficients(), a product and a sum each rounded to float (the CUDA kernel computes the same).
void normalize_cpu(float* out, const uint8_t* in, int64_t n, int64_t hw, const NormParams& p);

// The coefficients of the modes that do not depend on the image (dataset, imagenet); shared with
// the CUDA kernel (kernels/cuda/normalize_cuda.cu), hence inline.
inline void norm_fixed_coefficients(const NormParams& p, float a[3], float b[3]) {
  if (p.mode == NormMode::ImageNet) {
    for (int c = 0; c < 3; ++c) a[c] = 1.f / (255.f * kImageNetStd[c]), b[c] = -kImageNetMean[c] / kImageNetStd[c];
    return;
  }
  const double inv = 1.0 / (static_cast<double>(p.std) + kNormEps);
  for (int c = 0; c < 3; ++c) a[c] = static_cast<float>(inv), b[c] = static_cast<float>(-static_cast<double>(p.mean) * inv);
}

// The per-channel coefficients of one image (hw pixels): y = x * a[c] + b[c].
//   sample: a = 1 / (std_i + eps), b = -mean_i * a (computed in double, rounded to float)
//   dataset: the same with p.mean, p.std; imagenet: a = 1 / (255 s_c), b = -m_c / s_c.
void norm_coefficients(const NormParams& p, const uint8_t* image, int64_t hw, float a[3], float b[3]);

// Mean and (population) standard deviation of all pixels of the given images, in double, for
// dataset mode. images: (n, hw).
void pixel_mean_std(const uint8_t* images, int64_t n, int64_t hw, double* mean, double* std);

}  // namespace cxr::io
