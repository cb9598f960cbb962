#include "tools/step_inputs.h"

#include <random>
#include <vector>

namespace cxr::app {

void upload_random_step_inputs(DenseNet& net, uint64_t seed) {
  Backend* be = &net.backend();
  const int64_t batch = net.batch();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::bernoulli_distribution coin(0.2);
  const int64_t K = net.config().classes;
  std::vector<float> x(static_cast<size_t>(net.input().numel())), y(static_cast<size_t>(batch * K));
  std::vector<float> wp(static_cast<size_t>(K)), wn(static_cast<size_t>(K));
  for (auto& v : x) v = normal(rng);
  for (auto& v : y) v = coin(rng) ? 1.0f : 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    double pos = 0;
    for (int64_t i = 0; i < batch; ++i) pos += y[size_t(i * K + k)];
    wp[size_t(k)] = float(1 - pos / double(batch));
    wn[size_t(k)] = float(pos / double(batch));
  }
  be->copy_to_device(net.input().data, x.data(), sizeof(float) * x.size());
  be->copy_to_device(net.labels(), y.data(), sizeof(float) * y.size());
  be->copy_to_device(net.w_pos(), wp.data(), sizeof(float) * wp.size());
  be->copy_to_device(net.w_neg(), wn.data(), sizeof(float) * wn.size());
  be->synchronize();
}

}  // namespace cxr::app
