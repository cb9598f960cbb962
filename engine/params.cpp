#include "engine/params.h"

#include <numeric>

namespace cxr {

const char* role_name(ParamRole r) {
  switch (r) {
    case ParamRole::ConvKernel: return "conv kernel";
    case ParamRole::BnGamma: return "bn gamma";
    case ParamRole::BnBeta: return "bn beta";
    case ParamRole::BnMovingMean: return "bn moving mean";
    case ParamRole::BnMovingVariance: return "bn moving variance";
    case ParamRole::DenseKernel: return "dense kernel";
    case ParamRole::DenseBias: return "dense bias";
  }
  return "?";
}

const char* keras_weight_name(ParamRole r) {
  switch (r) {
    case ParamRole::ConvKernel: return "kernel";
    case ParamRole::BnGamma: return "gamma";
    case ParamRole::BnBeta: return "beta";
    case ParamRole::BnMovingMean: return "moving_mean";
    case ParamRole::BnMovingVariance: return "moving_variance";
    case ParamRole::DenseKernel: return "kernel";
    case ParamRole::DenseBias: return "bias";
  }
  return "?";
}

std::string ParamEntry::keras_path() const { return "/" + layer + "/" + layer + "/" + weight() + ":0"; }

int ParamTable::add(const std::string& layer, ParamRole role, std::vector<int64_t> keras_shape,
                    std::vector<int64_t> shape) {
  ParamEntry e;
  e.index = int(entries_.size());
  e.layer = layer;
  e.role = role;
  e.numel = std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<int64_t>());
  e.keras_shape = std::move(keras_shape);
  e.shape = std::move(shape);
  e.trainable = role != ParamRole::BnMovingMean && role != ParamRole::BnMovingVariance;
  int64_t& counter = e.trainable ? trainable_ : state_;
  e.offset = counter;
  counter += e.numel;
  entries_.push_back(std::move(e));
  return int(entries_.size()) - 1;
}

int ParamTable::add_conv(const std::string& layer, int64_t out_c, int64_t in_c, int64_t k) {
  return add(layer, ParamRole::ConvKernel, {k, k, in_c, out_c}, {out_c, in_c, k, k});
}

int ParamTable::add_batchnorm(const std::string& layer, int64_t channels) {
  const int first = add(layer, ParamRole::BnGamma, {channels}, {channels});
  add(layer, ParamRole::BnBeta, {channels}, {channels});
  add(layer, ParamRole::BnMovingMean, {channels}, {channels});
  add(layer, ParamRole::BnMovingVariance, {channels}, {channels});
  return first;
}

int ParamTable::add_dense(const std::string& layer, int64_t in, int64_t out) {
  const int first = add(layer, ParamRole::DenseKernel, {in, out}, {in, out});
  add(layer, ParamRole::DenseBias, {out}, {out});
  return first;
}

int ParamTable::find(const std::string& layer, const std::string& weight) const {
  for (const auto& e : entries_)
    if (e.layer == layer && e.weight() == weight) return e.index;
  return -1;
}

namespace {
// Conv kernels: element (k, c, r, s) is at ((k*C + c)*R + r)*S + s in OIHW and ((r*S + s)*C + c)*K + k in
// HWIO; every other tensor has the same layout on both sides.
void convert(const ParamEntry& e, const float* from, float* to, bool keras_to_ours) {
  if (e.role != ParamRole::ConvKernel) {
    std::copy(from, from + e.numel, to);
    return;
  }
  const int64_t K = e.shape[0], C = e.shape[1], R = e.shape[2], S = e.shape[3];
  for (int64_t r = 0; r < R; ++r)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t k = 0; k < K; ++k) {
          const int64_t oihw = ((k * C + c) * R + r) * S + s, hwio = ((r * S + s) * C + c) * K + k;
          if (keras_to_ours)
            to[oihw] = from[hwio];
          else
            to[hwio] = from[oihw];
        }
}
}  // namespace

void keras_to_ours(const ParamEntry& e, const float* keras, float* ours) { convert(e, keras, ours, true); }
void ours_to_keras(const ParamEntry& e, const float* ours, float* keras) { convert(e, ours, keras, false); }

}  // namespace cxr
