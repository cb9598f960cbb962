// cxr plan: the device memory plan of a DenseNet training (or inference) step by category, its total,
// and the largest batch that fits a memory budget. The engine allocates exactly this plan (one arena).
#include <cstdio>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "engine/model.h"
#include "tools/commands.h"
#include "tools/memory_policy.h"

namespace cxr::cli {

namespace {

struct PlanOptions {
  int64_t batch = 32, size = 320, classes = 14;
  std::string arch = "densenet121", precision = "fp32", device = "auto";
  app::MemoryPolicyOptions memory;
  bool inference = false, json = false;
};

size_t inference_plan_bytes(Backend& be, const PlanOptions& o, int64_t batch) {
  DenseNet net(be, DenseNetConfig::from_arch(o.arch, o.classes), batch, o.size, o.size, /*trainable=*/false,
               /*allocate=*/false);
  return net.plan().total_bytes();
}

void run_plan(const PlanOptions& o) {
  if (o.precision != "fp32" && o.precision != "tf32")
    CXR_FAIL("--precision ", o.precision, ": this build plans fp32/tf32 storage only (bf16/fp16 are issue 7's work)");
  auto be = make_backend(o.device);
  const MemoryBudget given = app::memory_budget(*be, o.memory);
  const size_t budget = given.bytes;
  DenseNetConfig cfg = DenseNetConfig::from_arch(o.arch, o.classes);
  // Largest batch within the budget: under "auto" the most frugal policy's (auto switches to it).
  int64_t max_batch = -1;
  if (o.inference) {
    if (budget > 0)
      max_batch = app::largest_batch([&](int64_t n) { return inference_plan_bytes(*be, o, n); }, budget);
  } else {
    DenseNetConfig frugal = cfg;
    frugal.recompute_bottleneck = o.memory.recompute != "bn-relu";
    if (budget > 0) max_batch = app::max_training_batch(*be, frugal, o.size, o.size, budget);
    // The plan shown: the policy asked for, or under "auto" the fastest that fits the budget (the
    // most frugal when none does: the plan then says by how much it is over; with no budget known,
    // the fastest).
    if (o.memory.recompute != "auto")
      cfg = frugal;
    else if (budget > 0)
      cfg = fit_to_budget(*be, cfg, o.batch, o.size, o.size, budget).value_or(frugal);
  }
  DenseNet net(*be, cfg, o.batch, o.size, o.size, !o.inference, /*allocate=*/false);
  const MemoryPlan& plan = net.plan();
  const bool fits = budget == 0 || plan.total_bytes() <= budget;
  if (o.json) {
    nlohmann::json j{{"arch", o.arch}, {"batch", o.batch}, {"size", o.size}, {"precision", o.precision},
                     {"mode", o.inference ? "inference" : "train"}, {"device", be->name()},
                     {"recompute", o.inference ? "none (inference keeps nothing for backward)" : recompute_name(cfg)},
                     {"total_bytes", plan.total_bytes()},
                     {"activations_bytes", plan.category_bytes(MemCategory::Activations)}};
    for (int c = 0; c < int(MemCategory::Count); ++c)
      j["categories"][category_name(MemCategory(c))] = plan.category_bytes(MemCategory(c));
    if (budget > 0) j["memory_budget_bytes"] = budget, j["max_batch"] = max_batch, j["fits_budget"] = fits;
    j["memory_budget_source"] = given.source;
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("%s %s step, batch %ld, %ldx%ld, %s, on %s\n", o.arch.c_str(), o.inference ? "inference" : "training",
              long(o.batch), long(o.size), long(o.size), o.precision.c_str(), be->name().c_str());
  for (int c = 0; c < int(MemCategory::Count); ++c)
    std::printf("  %-32s %12s\n", category_name(MemCategory(c)),
                format_bytes(double(plan.category_bytes(MemCategory(c)))).c_str());
  std::printf("  %-32s %12s\n", "total (one allocation)", format_bytes(double(plan.total_bytes())).c_str());
  if (!o.inference) std::printf("recomputed in backward: %s\n", recompute_name(cfg));
  std::printf("memory budget: %s, %s\n", format_bytes(double(budget)).c_str(), given.source.c_str());
  if (budget > 0) {
    if (!fits)
      std::printf("over the budget of %s by %s\n", format_bytes(double(budget)).c_str(),
                  format_bytes(double(plan.total_bytes() - budget)).c_str());
    std::printf("largest batch within %s: %ld\n", format_bytes(double(budget)).c_str(), long(max_batch));
  }
}

}  // namespace

void add_plan_commands(CLI::App& app) {
  auto o = std::make_shared<PlanOptions>();
  CLI::App* p = app.add_subcommand("plan", "Device memory plan by category and the largest batch within a budget");
  p->add_option("--batch", o->batch, "Batch size")->capture_default_str();
  p->add_option("--size", o->size, "Image size (square)")->capture_default_str();
  p->add_option("--arch", o->arch, "densenet121, densenet169 or densenet201")
      ->check(CLI::IsMember({"densenet121", "densenet169", "densenet201"}))->capture_default_str();
  p->add_option("--classes", o->classes, "Output classes")->capture_default_str();
  p->add_option("--precision", o->precision, "fp32 or tf32 (bf16/fp16: not in this build)")->capture_default_str();
  app::add_memory_policy_options(p, &o->memory);
  p->add_option("--device", o->device, "cpu, cuda or auto (the workspace depends on the backend)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))->capture_default_str();
  p->add_flag("--inference", o->inference, "Plan inference instead of a training step");
  p->add_flag("--json", o->json, "Machine-readable output (activations_bytes, total_bytes, max_batch)");
  p->callback([o] { run_plan(*o); });
}

}  // namespace cxr::cli
