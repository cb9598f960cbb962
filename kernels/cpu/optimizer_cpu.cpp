// CPU Adam over the flat parameter buffer (formula in engine/backend.h).
#include <cmath>

#include "kernels/cpu/ops_cpu.h"

namespace cxr::cpu {

template <typename T>
void adam_update(T* params, T* m, T* v, const T* grads, int64_t count, const AdamParams& a) {
  CXR_CHECK(a.step >= 1, "Adam step counts from 1, got ", a.step);
  const double c1 = 1.0 - std::pow(a.beta1, double(a.step)), c2 = 1.0 - std::pow(a.beta2, double(a.step));
  const T b1 = T(a.beta1), b2 = T(a.beta2), wd = T(a.weight_decay), eps = T(a.eps);
  const T step_size = T(a.lr / c1), inv_sqrt_c2 = T(1.0 / std::sqrt(c2));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    const T g = grads[i] + wd * params[i];
    m[i] = b1 * m[i] + (T(1) - b1) * g;
    v[i] = b2 * v[i] + (T(1) - b2) * g * g;
    params[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_c2 + eps);
  }
}

template void adam_update<float>(float*, float*, float*, const float*, int64_t, const AdamParams&);
template void adam_update<double>(double*, double*, double*, const double*, int64_t, const AdamParams&);

}  // namespace cxr::cpu
