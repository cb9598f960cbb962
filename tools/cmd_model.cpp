// cxr model-info and cxr bench.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/data_parallel.h"
#include "engine/init.h"
#include "engine/model.h"
#include "io/checkpoint.h"
#include "tools/commands.h"
#include "tools/memory_policy.h"
#include "tools/step_inputs.h"

namespace cxr::cli {

namespace {

size_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return size_t(u.ru_maxrss) * 1024;  // Linux reports KiB
}

struct ModelInfoOptions {
  std::string arch = "densenet121";
  int64_t classes = 14, size = 320;
  bool json = false;
};

void run_model_info(const ModelInfoOptions& o) {
  auto be = make_cpu_backend();  // planning only: a batch of 1 on the host
  DenseNet net(*be, DenseNetConfig::from_arch(o.arch, o.classes), 1, o.size, o.size, /*trainable=*/false);
  const auto& t = net.table();
  int64_t state = t.state_count();
  if (o.json) {
    nlohmann::json j;
    j["arch"] = o.arch;
    j["classes"] = o.classes;
    j["image_size"] = o.size;
    j["trainable_parameters"] = t.trainable_count();
    j["non_trainable_parameters"] = state;
    j["weight_tensors"] = t.size();
    for (const auto& l : net.layers())
      j["layers"].push_back({{"name", l.name}, {"kind", l.kind}, {"output", {l.out.c, l.out.h, l.out.w}},
                             {"parameters", l.params}});
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("%-22s %-16s %-18s %12s\n", "layer", "kind", "output (C,H,W)", "parameters");
  for (const auto& l : net.layers()) {
    char shape[64];
    std::snprintf(shape, sizeof shape, "(%ld, %ld, %ld)", long(l.out.c), long(l.out.h), long(l.out.w));
    std::printf("%-22s %-16s %-18s %12ld\n", l.name.c_str(), l.kind.c_str(), shape, long(l.params));
  }
  std::printf("\n%s, %ld classes, input 3x%ldx%ld\n", o.arch.c_str(), long(o.classes), long(o.size), long(o.size));
  std::printf("trainable parameters:     %12ld\n", long(t.trainable_count()));
  std::printf("non-trainable (BN stats): %12ld\n", long(state));
  std::printf("total:                    %12ld\n", long(t.trainable_count() + state));
  std::printf("weight tensors:           %12d\n", t.size());
}

struct BenchOptions {
  int64_t batch = 8, size = 128, steps = 5, warmup = 1;
  std::string device = "auto", precision = "fp32", arch = "densenet121", weights;
  app::MemoryPolicyOptions memory;
  bool inference = false, json = false;
  double bucket_mb = 25;  // under mpirun/srun: `batch` is the global batch (Note [Data parallel])
};

void run_bench(const BenchOptions& o) {
  if (o.precision != "fp32")
    CXR_FAIL("--precision ", o.precision, ": this build runs fp32 only (reduced precision is issue 7's work)");
  CXR_CHECK(o.steps >= 1 && o.warmup >= 0, "--steps must be >= 1 and --warmup >= 0");
  Comm& comm = process_comm();
  const bool dp = comm.size() > 1 && !o.inference;  // a data-parallel training step over the ranks
  if (dp && (o.batch % comm.size() != 0 || o.batch / comm.size() < 2))
    CXR_FAIL("--batch ", o.batch, " (the global batch) must divide by the ", comm.size(), " ranks into at least 2 each");
  const int64_t batch = dp ? o.batch / comm.size() : o.batch;  // this rank's
  auto be = make_backend_for_rank(o.device, comm);
  const size_t rss_before = peak_rss_bytes();
  DenseNetConfig cfg = DenseNetConfig::from_arch(o.arch);
  if (!o.inference) cfg = app::apply_memory_policy(*be, cfg, batch, o.size, o.size, o.memory);
  DenseNet net(*be, cfg, batch, o.size, o.size, !o.inference);
  std::vector<float> params, state;
  init_keras_default(net.table(), params, state, 1);
  if (!o.weights.empty())  // the speed does not depend on the values; this checks a file loads
    std::fprintf(stderr, "weights %s: %s\n", o.weights.c_str(),
                 io::load_weights(o.weights, net.table(), params, state, io::HeadPolicy::LoadOrInit, 1).c_str());
  net.set_weights(params, state);

  app::upload_random_step_inputs(net, 7 + uint64_t(comm.rank()));
  std::unique_ptr<GradientReducer> reducer;
  if (dp) {
    reducer = make_gradient_reducer(*be, comm, net.grads(), plan_gradient_buckets(net.table(), o.bucket_mb));
    net.set_gradient_hook([r = reducer.get()](int64_t first) { r->gradients_final_from(first); });
    if (comm.root())
      std::fprintf(stderr, "data parallel: %d ranks, %ld images each, gradients by %s in %.0f MB buckets\n",
                   comm.size(), long(batch), reducer->name().c_str(), o.bucket_mb);
  }
  const bool say = comm.root();

  if (say) std::fprintf(stderr, "cxr bench: %s on %s, batch %ld, %ldx%ld, %s, arena %s\n", o.arch.c_str(),
               be->name().c_str(), long(o.batch), long(o.size), long(o.size),
               o.inference ? "inference" : (std::string("training step (forward + backward), recomputing ") + recompute_name(cfg)).c_str(),
               format_bytes(double(net.plan().total_bytes())).c_str());
  std::vector<double> times, waits;
  for (int64_t i = 0; i < o.warmup + o.steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    double waited = 0;
    if (o.inference) {
      net.forward(false);
    } else {
      if (reducer) reducer->begin();
      net.forward(true);
      net.loss();
      net.backward();
      if (reducer) waited = reducer->finish();
    }
    be->synchronize();
    // The ranks meet in the all-reduce every step, so their step times agree closely: the mean over
    // the ranks is reported (and the mean of their waits).
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dp) {
      double v[2] = {dt, waited};
      comm.allreduce_sum(v, 2, "bench step time");
      dt = v[0] / comm.size(), waited = v[1] / comm.size();  // means over the ranks
    }
    const bool warm = i < o.warmup;
    if (!warm) times.push_back(dt), waits.push_back(waited);
    if (say)
      std::fprintf(stderr, "  step %ld/%ld%s: %.3f s (%.1f images/s)%s\n", long(i + 1), long(o.warmup + o.steps),
                   warm ? " (warm-up)" : "", dt, double(o.batch) / dt,
                   dp ? (", waiting for gradients " + std::to_string(waited).substr(0, 5) + " s").c_str() : "");
  }
  std::sort(times.begin(), times.end());
  std::sort(waits.begin(), waits.end());
  const double median = times[times.size() / 2];
  const double median_wait = waits[waits.size() / 2];
  if (!say) return;
  const double ips = double(o.batch) / median;
  const MeasuredMemory peak = be->measured_peak();  // beside the arena's own figure
  if (o.json) {
    nlohmann::json j{{"arch", o.arch},
                     {"device", be->name()},
                     {"batch", o.batch},
                     {"size", o.size},
                     {"mode", o.inference ? "inference" : "train"},
                     {"recompute", o.inference ? "none" : recompute_name(cfg)},
                     {"steps", o.steps},
                     {"median_step_seconds", median},
                     {"images_per_second", ips},
                     {"peak_bytes", peak.bytes},
                     {"peak_bytes_kind", peak.how},
                     {"allocated_peak_bytes", be->peak_allocated_bytes()},
                     {"arena_bytes", net.plan().total_bytes()},
                     {"rss_before_model_bytes", rss_before},
                     {"ranks", dp ? comm.size() : 1},
                     {"comm_wait_seconds", median_wait}};
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("device              %s\n", be->name().c_str());
  std::printf("step                %s, batch %ld, %ldx%ld\n", o.inference ? "inference" : "train",
              long(o.batch), long(o.size), long(o.size));
  std::printf("median step         %.4f s over %ld steps\n", median, long(o.steps));
  std::printf("images/s            %.2f\n", ips);
  if (dp)
    std::printf("ranks               %d (%ld images each); median wait for the gradient all-reduce %.4f s\n",
                comm.size(), long(batch), median_wait);
  std::printf("arena (planned)     %s\n", format_bytes(double(net.plan().total_bytes())).c_str());
  std::printf("allocated by cxr    %s (peak)\n", format_bytes(double(be->peak_allocated_bytes())).c_str());
  std::printf("peak memory         %s (measured: %s)\n", format_bytes(double(peak.bytes)).c_str(), peak.how.c_str());
}

}  // namespace

void add_model_commands(CLI::App& app) {
  auto mi = std::make_shared<ModelInfoOptions>();
  CLI::App* info = app.add_subcommand("model-info", "Print the layer table and parameter counts");
  info->add_option("--arch", mi->arch, "densenet121, densenet169 or densenet201")
      ->check(CLI::IsMember({"densenet121", "densenet169", "densenet201"}))
      ->capture_default_str();
  info->add_option("--classes", mi->classes, "Number of output classes")->capture_default_str();
  info->add_option("--size", mi->size, "Input image size for the output shapes")->capture_default_str();
  info->add_flag("--json", mi->json, "Machine-readable output on stdout");
  info->callback([mi] { run_model_info(*mi); });

  auto bo = std::make_shared<BenchOptions>();
  CLI::App* bench = app.add_subcommand("bench", "Time training steps (or inference) on random data");
  bench->add_option("--batch", bo->batch, "Batch size")->capture_default_str();
  bench->add_option("--size", bo->size, "Image size (square)")->capture_default_str();
  bench->add_option("--steps", bo->steps, "Timed steps")->capture_default_str();
  bench->add_option("--warmup", bo->warmup, "Untimed warm-up steps")->capture_default_str();
  bench->add_option("--bucket-mb", bo->bucket_mb, "Under mpirun/srun: MB of gradients per all-reduce bucket (--batch is the global batch)")->capture_default_str()->check(CLI::PositiveNumber);
  bench->add_option("--device", bo->device, "cpu, cuda or auto")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  bench->add_option("--precision", bo->precision, "fp32 (tf32, bf16, fp16: not in this build)")
      ->capture_default_str();
  bench->add_option("--arch", bo->arch, "densenet121, densenet169 or densenet201")->capture_default_str();
  bench->add_flag("--inference", bo->inference, "Time inference instead of a training step");
  bench->add_option("--weights", bo->weights, "Weights to load first (default: Keras's initialisers)");
  app::add_memory_policy_options(bench, &bo->memory);
  bench->add_flag("--json", bo->json, "Machine-readable output on stdout");
  bench->callback([bo] { run_bench(*bo); });
}

}  // namespace cxr::cli
