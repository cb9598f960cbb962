// The parameter table: one row per weight tensor (Keras layer name, weight name, role, shape), in
// Keras order. Trainable tensors live in one flat parameter buffer (and their gradients in another
// with the same offsets); BN running statistics live in a separate flat state buffer. The table
// drives allocation, initialisation, HDF5 load/save, the optimizer and the tests.
//
// Layouts: convolution kernels are stored OIHW (K, C, R, S) in our buffers and HWIO in Keras files;
// dense kernels are (in, out) in both; BN vectors are (C).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace cxr {

enum class ParamRole { ConvKernel, BnGamma, BnBeta, BnMovingMean, BnMovingVariance, DenseKernel, DenseBias };
const char* role_name(ParamRole r);
// Keras's weight name for a role: kernel, gamma, beta, moving_mean, moving_variance, bias.
const char* keras_weight_name(ParamRole r);

struct ParamEntry {
  int index;                        // position in Keras order (the row of densenet121_tensors.tsv)
  std::string layer;                // Keras layer name, e.g. "conv2_block1_1_conv"
  ParamRole role;
  std::vector<int64_t> keras_shape; // e.g. [3, 3, 128, 32] (HWIO) for a conv kernel
  std::vector<int64_t> shape;       // ours, e.g. [32, 128, 3, 3] (OIHW)
  bool trainable;
  int64_t offset;                   // in floats, within the parameter buffer or the state buffer
  int64_t numel;

  std::string weight() const { return keras_weight_name(role); }
  // "/conv1/conv/conv1/conv/kernel:0": the dataset path in a legacy Keras weight file.
  std::string keras_path() const;
};

class ParamTable {
 public:
  int add_conv(const std::string& layer, int64_t out_c, int64_t in_c, int64_t k);
  // Adds gamma, beta, moving_mean, moving_variance; returns the index of gamma (the rest follow).
  int add_batchnorm(const std::string& layer, int64_t channels);
  // Adds kernel (in, out) and bias (out); returns the index of the kernel.
  int add_dense(const std::string& layer, int64_t in, int64_t out);

  const std::vector<ParamEntry>& entries() const { return entries_; }
  const ParamEntry& operator[](int i) const { return entries_.at(size_t(i)); }
  int size() const { return int(entries_.size()); }
  int64_t trainable_count() const { return trainable_; }  // floats in the parameter buffer
  int64_t state_count() const { return state_; }          // floats in the state buffer
  // Index of a tensor by Keras layer and weight name, or -1.
  int find(const std::string& layer, const std::string& weight) const;

 private:
  int add(const std::string& layer, ParamRole role, std::vector<int64_t> keras_shape,
          std::vector<int64_t> shape);
  std::vector<ParamEntry> entries_;
  int64_t trainable_ = 0, state_ = 0;
};

// Element index conversion between Keras layout and ours for one tensor (host arrays).
void keras_to_ours(const ParamEntry& e, const float* keras, float* ours);
void ours_to_keras(const ParamEntry& e, const float* ours, float* keras);

}  // namespace cxr
