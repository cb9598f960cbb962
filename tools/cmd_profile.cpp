// cxr profile: bench's steps with every op timed (engine/profiler.h), as tables by op, layer or
// block with FLOPs, bytes and roofline shares, a Chrome/Perfetto trace, and comparisons of two runs.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/init.h"
#include "engine/model.h"
#include "engine/profiler.h"
#include "io/checkpoint.h"
#include "io/fileutil.h"
#include "tools/commands.h"
#include "tools/memory_policy.h"
#include "tools/profile_report.h"
#include "tools/step_inputs.h"

namespace cxr::cli {
namespace {

struct ProfileOptions {
  int64_t batch = 8, size = 128, steps = 3, warmup = 1;
  std::string device = "auto", arch = "densenet121", by = "op", sort = "total", trace;
  std::vector<std::string> compare;
  app::MemoryPolicyOptions memory;
  bool inference = false, json = false;
  int64_t top = 25;
  int64_t overhead_pairs = 0;  // --measure-overhead N
};

nlohmann::json read_json_file(const std::string& path) {
  try {
    return nlohmann::json::parse(io::read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not the JSON of `cxr profile --json`: " + e.what());
  }
}

void run_compare(const ProfileOptions& o) {
  const nlohmann::json a = read_json_file(o.compare[0]), b = read_json_file(o.compare[1]);
  for (const auto* j : {&a, &b})
    if (!j->contains("by_op") || !j->contains("by_block") || !j->contains("step_ms"))
      throw Error((j == &a ? o.compare[0] : o.compare[1]) + ": no by_op, by_block and step_ms: not the JSON of "
                  "`cxr profile --json`");
  app::print_comparison(a, b, o.compare[0], o.compare[1], size_t(o.top));
}

// One profiled step: forward, loss, backward and the optimizer (training) or forward (inference).
void run_step(DenseNet& net, ProfilingBackend& prof, bool inference, int64_t step) {
  if (inference) {
    net.forward(false);
    return;
  }
  net.forward(true);
  net.loss();
  net.backward();
  BackendRange phase(prof, "optimizer");
  AdamParams a;
  a.lr = 1e-6;  // small: the weights stay where they are, step after step
  a.step = step + 1;
  prof.adam_update(net.params(), net.adam_m(), net.adam_v(), net.grads(), net.table().trainable_count(), a);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// --measure-overhead N: the same step on three models of one backend, interleaved N times so that the
// machine's noise hits all alike: plain (no profiler), through a ProfilingBackend not recording, and
// recording. Also the cost of a no-op range push/pop pair on the plain backend, times the step's pairs.
void run_overhead(const ProfileOptions& o, Backend& inner, ProfilingBackend& prof, DenseNet& profiled,
                  const DenseNetConfig& cfg) {
  DenseNet plain(inner, cfg, o.batch, o.size, o.size, !o.inference);
  std::vector<float> params, state;
  init_keras_default(plain.table(), params, state, 1);
  plain.set_weights(params, state);
  app::upload_random_step_inputs(plain, 7);
  ProfilingBackend idle(inner);  // never records
  DenseNet passthrough(idle, cfg, o.batch, o.size, o.size, !o.inference);
  passthrough.set_weights(params, state);
  app::upload_random_step_inputs(passthrough, 7);
  std::vector<double> t_plain, t_idle, t_rec;
  auto time = [&](DenseNet& net, ProfilingBackend& p, bool record, int64_t i) {
    const auto t0 = std::chrono::steady_clock::now();
    if (record) p.begin_step(i + 1);
    run_step(net, p, o.inference, i);
    if (record) p.end_step();
    inner.synchronize();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  ProfilingBackend plain_wrap(inner);  // run_step's optimizer range goes through it; never records
  for (int64_t i = 0; i < o.overhead_pairs + 1; ++i) {
    const double a = time(plain, plain_wrap, false, i), b = time(passthrough, idle, false, i),
                 c = time(profiled, prof, true, i);
    if (i == 0) continue;  // warm-up round
    t_plain.push_back(a), t_idle.push_back(b), t_rec.push_back(c);
  }
  const int64_t pairs = 1000000;
  const auto r0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < pairs; ++i) {
    inner.range_push("x");
    inner.range_pop();
  }
  const double ns_per_pair = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - r0).count() /
                             double(pairs);
  // The profiler's own cost per op, free of the step's noise: an empty op (fill of 0 floats) recorded
  // against the same op called directly; a shape-formatting op (relu on a one-element tensor) likewise.
  const int64_t n_ops = 200000;
  float* one = static_cast<float*>(inner.allocate(256));
  const Tensor t1(one, Shape{1, 1, 1, 1}, inner.device());
  auto per_op_ns = [&](Backend& be, bool relu) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n_ops; ++i) relu ? be.relu_forward(t1, t1) : be.fill(one, 0.0f, 0);
    inner.synchronize();
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / double(n_ops);
  };
  ProfilingBackend rec(inner);
  rec.begin_step(1);
  const double fill_rec = per_op_ns(rec, false), relu_rec = per_op_ns(rec, true);
  rec.end_step();
  const double fill_direct = per_op_ns(inner, false), relu_direct = per_op_ns(inner, true);
  inner.release(one);
  const double ops_per_step = double(prof.ops().size()) / double(std::max<size_t>(1, t_rec.size()));
  const double mp = median(t_plain), mi = median(t_idle), mr = median(t_rec);
  std::printf("overhead over %ld interleaved rounds (median step):\n", long(o.overhead_pairs));
  std::printf("  plain backend                 %10.2f ms\n", mp);
  std::printf("  through the profiler, off     %10.2f ms  (%+.2f%%)\n", mi, 100 * (mi / mp - 1));
  std::printf("  profiling every op            %10.2f ms  (%+.2f%%)\n", mr, 100 * (mr / mp - 1));
  std::printf("  a no-op range push/pop pair   %10.1f ns on %s\n", ns_per_pair, inner.name().c_str());
  const double per_op = std::max(relu_rec - relu_direct, fill_rec - fill_direct);
  std::printf("  recording one op              %10.1f ns (empty op), %.1f ns (with shapes)\n", fill_rec - fill_direct,
              relu_rec - relu_direct);
  std::printf("  recording a step's %.0f ops    %10.3f ms = %.3f%% of the plain step\n", ops_per_step,
              ops_per_step * per_op * 1e-6, 100 * ops_per_step * per_op * 1e-6 / mp);
}

void run_profile(const ProfileOptions& o) {
  if (o.compare.size() == 2) return run_compare(o);
  CXR_CHECK(o.compare.empty(), "--compare takes two files: A.json B.json");
  auto inner = make_backend(o.device);
  ProfilingBackend prof(*inner);
  DenseNetConfig cfg = DenseNetConfig::from_arch(o.arch);
  if (!o.inference) cfg = app::apply_memory_policy(*inner, cfg, o.batch, o.size, o.size, o.memory);
  DenseNet net(prof, cfg, o.batch, o.size, o.size, !o.inference);
  std::vector<float> params, state;
  init_keras_default(net.table(), params, state, 1);
  net.set_weights(params, state);
  app::upload_random_step_inputs(net, 7);
  std::fprintf(stderr, "cxr profile: %s on %s, batch %ld, %ldx%ld, %s\n", o.arch.c_str(), inner->name().c_str(),
               long(o.batch), long(o.size), long(o.size),
               o.inference ? "inference" : "training step (forward, loss, backward, Adam)");
  if (o.overhead_pairs > 0) return run_overhead(o, *inner, prof, net, cfg);
  for (int64_t i = 0; i < o.warmup; ++i) {
    run_step(net, prof, o.inference, i);
    inner->synchronize();
  }
  std::vector<std::pair<double, double>> step_spans;  // microseconds since the profiler's origin
  std::vector<double> step_ms;
  for (int64_t i = 0; i < o.steps; ++i) {
    prof.begin_step(i + 1);
    const auto t0 = std::chrono::steady_clock::now();
    run_step(net, prof, o.inference, o.warmup + i);
    prof.end_step();  // synchronises
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    step_ms.push_back(ms);
    std::fprintf(stderr, "  step %ld/%ld: %.1f ms\n", long(i + 1), long(o.steps), ms);
  }
  // Step spans on the trace's clock: from the first range or op of the step to the end of its last.
  for (int64_t i = 0; i < o.steps; ++i) {
    double lo = 1e300, hi = 0;
    for (const auto& r : prof.ranges())
      if (r.step == i + 1) lo = std::min(lo, r.start_us), hi = std::max(hi, r.start_us + r.dur_us);
    for (const auto& op : prof.ops())
      if (op.step == i + 1) lo = std::min(lo, op.start_us), hi = std::max(hi, op.start_us + op.dur_us);
    step_spans.emplace_back(lo, hi - lo);
  }
  std::vector<double> sorted = step_ms;
  std::sort(sorted.begin(), sorted.end());
  const double median_ms = sorted[sorted.size() / 2];
  double mean_ms = 0;
  for (double v : step_ms) mean_ms += v / double(step_ms.size());

  app::Peaks peaks;
  if (inner->device() == Device::CPU) {
    peaks = app::measure_cpu_peaks(omp_get_max_threads());
  } else {
    peaks.gflops = inner->peak_gflops();
    peaks.gbps = inner->peak_gbytes_per_second();
    peaks.how = "device properties (SMs x FP32 lanes x 2 x clock; 2 x memory clock x bus width)";
  }
  // Tables use the mean step: the ops' totals are sums over all steps.
  auto rows = [&](const std::string& by) { return app::aggregate(prof.ops(), by, o.steps, mean_ms, peaks, o.sort); };
  if (!o.trace.empty()) {
    io::write_text_file(o.trace, app::chrome_trace(prof, step_spans, "cxr profile " + o.arch).dump() + "\n");
    std::fprintf(stderr, "trace: %s (open in https://ui.perfetto.dev or chrome://tracing)\n", o.trace.c_str());
  }
  if (o.json) {
    nlohmann::json j{{"arch", o.arch},
                     {"device", inner->name()},
                     {"batch", o.batch},
                     {"size", o.size},
                     {"mode", o.inference ? "inference" : "train"},
                     {"recompute", o.inference ? "none" : recompute_name(cfg)},
                     {"steps", o.steps},
                     {"step_ms", mean_ms},
                     {"median_step_ms", median_ms},
                     {"images_per_second", double(o.batch) / (median_ms * 1e-3)},
                     {"timing", prof.device_timed() ? "device events" : "host steady clock"},
                     {"peak_gflops", peaks.gflops},
                     {"peak_gbps", peaks.gbps},
                     {"peaks_from", peaks.how},
                     {"by", o.by},
                     {"rows", app::rows_json(rows(o.by))},
                     {"by_op", app::rows_json(rows("op"))},
                     {"by_layer", app::rows_json(rows("layer"))},
                     {"by_block", app::rows_json(rows("block"))}};
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("device    %s\nstep      %s, batch %ld, %ldx%ld: mean %.2f ms, median %.2f ms over %ld steps (%.2f images/s)\n",
              inner->name().c_str(), o.inference ? "inference" : "train", long(o.batch), long(o.size), long(o.size),
              mean_ms, median_ms, long(o.steps), double(o.batch) / (median_ms * 1e-3));
  std::printf("peaks     %.1f GFLOP/s, %.1f GB/s (%s)\ntiming    %s\n\n", peaks.gflops, peaks.gbps, peaks.how.c_str(),
              prof.device_timed() ? "device events" : "host steady clock around each op");
  auto r = rows(o.by);
  if (int64_t(r.size()) > o.top) r.resize(size_t(o.top));
  app::print_rows(r, o.by, mean_ms);
}

}  // namespace

void add_profile_commands(CLI::App& app) {
  auto po = std::make_shared<ProfileOptions>();
  CLI::App* p = app.add_subcommand("profile", "Time every op of training steps (or inference): tables, roofline, trace");
  p->add_option("--batch", po->batch, "Batch size")->capture_default_str()->check(kAtLeastOne);
  p->add_option("--size", po->size, "Image size (square)")->capture_default_str()->check(kImageSide);
  p->add_option("--steps", po->steps, "Profiled steps")->capture_default_str()->check(kAtLeastOne);
  p->add_option("--warmup", po->warmup, "Unprofiled warm-up steps")->capture_default_str()->check(CLI::NonNegativeNumber);
  p->add_option("--device", po->device, "cpu, cuda or auto")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  p->add_option("--arch", po->arch, "densenet121, densenet169 or densenet201")
      ->check(CLI::IsMember({"densenet121", "densenet169", "densenet201"}))
      ->capture_default_str();
  p->add_flag("--inference", po->inference, "Profile inference instead of a training step");
  p->add_option("--by", po->by, "Rows per op kind, layer or block")
      ->check(CLI::IsMember({"op", "layer", "block"}))
      ->capture_default_str();
  p->add_option("--sort", po->sort, "total, calls, mean, flops, roofline (farthest below first) or name")
      ->check(CLI::IsMember({"total", "calls", "mean", "flops", "roofline", "name"}))
      ->capture_default_str();
  p->add_option("--top", po->top, "Rows printed")->capture_default_str()->check(kAtLeastOne);
  p->add_option("--trace", po->trace, "Write a Chrome/Perfetto trace (Trace Event JSON) of the profiled steps");
  p->add_option("--compare", po->compare, "A.json B.json: per-op and per-block differences of two --json runs")
      ->expected(2);
  p->add_option("--measure-overhead", po->overhead_pairs,
                "N: time N interleaved rounds of the step without the profiler, through it switched off, and "
                "profiled, and print the medians")
      ->check(kAtLeastOne);
  app::add_memory_policy_options(p, &po->memory);
  p->add_flag("--json", po->json, "Machine-readable output on stdout");
  p->callback([po] { run_profile(*po); });
}

}  // namespace cxr::cli
