#include "tools/memory_policy.h"

namespace cxr::app {

void add_memory_policy_options(CLI::App* cmd, MemoryPolicyOptions* o) {
  cmd->add_option("--recompute", o->recompute,
                  "What backward recomputes instead of keeping: bn-relu (every BN-ReLU output), "
                  "bn-relu+bottleneck (also each dense layer's 1x1 output: ~1 GiB less at batch 32, 320x320, "
                  "one more 1x1 convolution per layer), or auto (the fastest that fits --memory-budget)")
      ->check(CLI::IsMember({"auto", "bn-relu", "bn-relu+bottleneck"}))
      ->capture_default_str();
  cmd->add_option("--memory-budget", o->budget, "Memory the step may plan, e.g. 12G, 512M or bytes "
                                                "(default: a GPU's free memory, or host RAM)");
}

MemoryBudget memory_budget(Backend& be, const MemoryPolicyOptions& o) {
  return o.budget.empty() ? be.default_memory_budget() : MemoryBudget{parse_bytes(o.budget), "--memory-budget"};
}

int64_t largest_batch(const std::function<size_t(int64_t)>& plan_bytes, size_t budget) {
  int64_t lo = 0, hi = 1;  // double, then bisect
  while (hi <= (int64_t(1) << 20) && plan_bytes(hi) <= budget) lo = hi, hi *= 2;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    (plan_bytes(mid) <= budget ? lo : hi) = mid;
  }
  return lo;
}

int64_t max_training_batch(Backend& be, const DenseNetConfig& cfg, int64_t height, int64_t width, size_t budget) {
  return largest_batch([&](int64_t n) { return training_plan_bytes(be, cfg, n, height, width); }, budget);
}

DenseNetConfig apply_memory_policy(Backend& be, DenseNetConfig cfg, int64_t batch, int64_t height, int64_t width,
                                   const MemoryPolicyOptions& o) {
  const MemoryBudget given = memory_budget(be, o);
  const size_t budget = given.bytes;
  if (o.recompute != "auto") {
    cfg.recompute_bottleneck = o.recompute == "bn-relu+bottleneck";
    if (o.budget.empty()) return cfg;  // the allocation itself reports a device that is too small
    const size_t need = training_plan_bytes(be, cfg, batch, height, width);
    if (need > budget)
      CXR_FAIL("--recompute ", o.recompute, " plans ", format_bytes(double(need)), " for batch ", batch, " at ",
               height, "x", width, ", over --memory-budget ", format_bytes(double(budget)),
               " (largest batch within it: ", max_training_batch(be, cfg, height, width, budget), ")");
    return cfg;
  }
  if (auto fitted = fit_to_budget(be, cfg, batch, height, width, budget)) return *fitted;
  DenseNetConfig frugal = cfg;
  frugal.recompute_bottleneck = true;
  CXR_FAIL("a training step at batch ", batch, " and ", height, "x", width, " does not fit ",
           o.budget.empty() ? given.source + ", " : "--memory-budget ", format_bytes(double(budget)),
           " even recomputing bottlenecks (", format_bytes(double(training_plan_bytes(be, frugal, batch, height, width))),
           "); largest batch that fits: ", max_training_batch(be, frugal, height, width, budget));
}

}  // namespace cxr::app
