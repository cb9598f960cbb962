// One DenseNet121 training step (forward, weighted BCE, backward) on random data, per device and size:
// batch 8 / 128x128 and batch 32 / 320x320 on the CPU, and on the GPU when one is present.
// Counters: images_per_second (rate), arena_bytes (the plan), peak_bytes (measured: process peak RSS
// on the CPU, the device's memory in use on the GPU, Note [measured device memory]),
// allocated_peak_bytes (cxr's own allocations). `cxr bench` runs the same step for users.
#include <benchmark/benchmark.h>

#include <random>

#include "engine/init.h"
#include "engine/model.h"

namespace {

using namespace cxr;

void train_step(benchmark::State& state, const std::string& device, int64_t batch, int64_t size) {
  if (device == "cuda" && cuda_device_count() == 0) {
    state.SkipWithError(("no CUDA device: " + cuda_unavailable_reason()).c_str());
    return;
  }
  auto be = make_backend(device);
  DenseNet net(*be, DenseNetConfig::from_arch("densenet121"), batch, size, size);
  std::vector<float> params, bn;
  init_keras_default(net.table(), params, bn, 1);
  net.set_weights(params, bn);
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(net.input().numel())), y(static_cast<size_t>(batch * 14));
  std::vector<float> w(14, 0.5f);
  for (auto& v : x) v = normal(rng);
  for (size_t i = 0; i < y.size(); ++i) y[i] = (rng() % 5 == 0) ? 1.0f : 0.0f;
  be->copy_to_device(net.input().data, x.data(), sizeof(float) * x.size());
  be->copy_to_device(net.labels(), y.data(), sizeof(float) * y.size());
  be->copy_to_device(net.w_pos(), w.data(), sizeof(float) * w.size());
  be->copy_to_device(net.w_neg(), w.data(), sizeof(float) * w.size());
  auto step = [&] {
    net.forward(true);
    net.loss();  // synchronizes: the loss comes back to the host
    net.backward();
    be->synchronize();
  };
  step();  // warm-up: cuDNN algorithm choice, first-touch of the arena
  for (auto _ : state) step();
  state.counters["images_per_second"] =
      benchmark::Counter(double(batch) * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["arena_bytes"] = double(net.plan().total_bytes());
  // Measured (GPU: the device's memory in use, context and libraries included; CPU: peak RSS),
  // beside what cxr itself allocated (the arena, so about the plan).
  state.counters["peak_bytes"] = double(be->measured_peak().bytes);
  state.counters["allocated_peak_bytes"] = double(be->peak_allocated_bytes());
}

BENCHMARK_CAPTURE(train_step, cpu_b8_s128, std::string("cpu"), 8, 128)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(5);
BENCHMARK_CAPTURE(train_step, cpu_b32_s320, std::string("cpu"), 32, 320)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK_CAPTURE(train_step, cuda_b8_s128, std::string("cuda"), 8, 128)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2);
BENCHMARK_CAPTURE(train_step, cuda_b32_s320, std::string("cuda"), 32, 320)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3);

}  // namespace
