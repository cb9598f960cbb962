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

// out: (n, 3, hw) float, written (=); in: (n, hw) uint8. hw = S * S. Per-image statistics in double.
void normalize_cpu(float* out, const uint8_t* in, int64_t n, int64_t hw, const NormParams& p);

// Mean and (population) standard deviation of all pixels of the given images, in double, for
// dataset mode. images: (n, hw).
void pixel_mean_std(const uint8_t* images, int64_t n, int64_t hw, double* mean, double* std);

}  // namespace cxr::io
