// The training step's memory policies (engine/model.h, tools/memory_policy.h): recomputing the
// bottlenecks changes the plan by exactly their bytes and the step not at all; the planner picks the
// fastest policy within a budget; `cxr plan`, `cxr bench` and `cxr train` honour --recompute and
// --memory-budget and say clearly when nothing fits.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/init.h"
#include "engine/model.h"
#include "tests/test_data_util.h"
#include "test_util.h"
#include "tools/memory_policy.h"

namespace cxr {
namespace {

DenseNetConfig with_recompute(bool recompute) {
  DenseNetConfig c = DenseNetConfig::from_arch("densenet121", 14);
  c.recompute_bottleneck = recompute;
  return c;
}

// Sum over dense layers of the bottleneck (N, 128, H, W) in bytes, for a 64x64 input (blocks at
// 16, 8, 4, 2).
size_t bottleneck_bytes(int64_t n) {
  const int64_t layers[4] = {6, 12, 24, 16}, side[4] = {16, 8, 4, 2};
  size_t total = 0;
  for (int b = 0; b < 4; ++b) total += size_t(layers[b] * n * 128 * side[b] * side[b]) * sizeof(float);
  return total;
}

TEST(MemoryPolicy, RecomputingBottlenecksDropsExactlyTheirActivations) {
  auto be = make_cpu_backend();
  DenseNet keep(*be, with_recompute(false), 2, 64, 64, true, false), frugal(*be, with_recompute(true), 2, 64, 64, true, false);
  const size_t a_keep = keep.plan().category_bytes(MemCategory::Activations);
  const size_t a_frugal = frugal.plan().category_bytes(MemCategory::Activations);
  EXPECT_EQ(a_keep - a_frugal, bottleneck_bytes(2));
  // The shared bottleneck is scratch sized by the largest layer's (block 1: 16x16).
  EXPECT_EQ(frugal.plan().category_bytes(MemCategory::Recompute) - keep.plan().category_bytes(MemCategory::Recompute),
            size_t(2 * 128 * 16 * 16) * sizeof(float));
  EXPECT_LT(frugal.plan().total_bytes(), keep.plan().total_bytes());
}

TEST(MemoryPolicy, RecomputingBottlenecksGivesTheSameStep) {
  // The recomputed bottleneck is the same CPU computation on the same inputs as the forward one, so
  // every result is bitwise identical: compared exactly.
  auto be = make_cpu_backend();
  DenseNet a(*be, with_recompute(false), 2, 64, 64), b(*be, with_recompute(true), 2, 64, 64);
  EXPECT_EQ(be->peak_allocated_bytes(), a.plan().total_bytes() + b.plan().total_bytes());
  std::vector<float> params, state;
  init_test_generator(a.table(), params, state);
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const auto x = test::random_vector(size_t(a.input().numel()), seed, -2, 2);
  auto y = test::random_vector(size_t(2 * 14), seed + 1, 0, 1);
  for (auto& v : y) v = v < 0.3f ? 1.0f : 0.0f;
  const std::vector<float> wp(14, 0.7f), wn(14, 0.3f);
  for (DenseNet* net : {&a, &b}) {
    net->set_weights(params, state);
    std::copy(x.begin(), x.end(), net->input().data);
    std::copy(y.begin(), y.end(), net->labels());
    std::copy(wp.begin(), wp.end(), net->w_pos());
    std::copy(wn.begin(), wn.end(), net->w_neg());
    net->forward(true);
  }
  EXPECT_EQ(a.loss(), b.loss());
  a.backward();
  b.backward();
  EXPECT_EQ(a.get_logits(), b.get_logits());
  const auto ga = a.get_grads(), gb = b.get_grads();
  ASSERT_EQ(ga.size(), gb.size());
  size_t differ = 0;
  for (size_t i = 0; i < ga.size(); ++i) differ += ga[i] != gb[i];
  EXPECT_EQ(differ, 0u) << "of " << ga.size() << " gradients";
  std::vector<float> sa, sb;
  a.get_weights(nullptr, &sa);
  b.get_weights(nullptr, &sb);
  EXPECT_EQ(sa, sb) << "running statistics";
}

TEST(MemoryPolicy, FitToBudgetPicksTheFastestPolicyThatFits) {
  auto be = make_cpu_backend();
  const size_t keep = training_plan_bytes(*be, with_recompute(false), 4, 64, 64);
  const size_t frugal = training_plan_bytes(*be, with_recompute(true), 4, 64, 64);
  ASSERT_LT(frugal, keep);
  auto fit = fit_to_budget(*be, with_recompute(false), 4, 64, 64, keep);
  ASSERT_TRUE(fit.has_value());
  EXPECT_FALSE(fit->recompute_bottleneck) << "enough memory: nothing extra is recomputed";
  fit = fit_to_budget(*be, with_recompute(false), 4, 64, 64, keep - 1);
  ASSERT_TRUE(fit.has_value());
  EXPECT_TRUE(fit->recompute_bottleneck);
  EXPECT_STREQ(recompute_name(*fit), "bn-relu+bottleneck");
  EXPECT_FALSE(fit_to_budget(*be, with_recompute(false), 4, 64, 64, frugal - 1).has_value());
  // Asking for the frugal policy keeps it even when the budget would allow more.
  fit = fit_to_budget(*be, with_recompute(true), 4, 64, 64, keep);
  ASSERT_TRUE(fit.has_value());
  EXPECT_TRUE(fit->recompute_bottleneck);
}

TEST(MemoryPolicy, MaxBatchIsTheLargestThatFits) {
  auto be = make_cpu_backend();
  const size_t budget = training_plan_bytes(*be, with_recompute(true), 5, 64, 64);
  const int64_t max = app::max_training_batch(*be, with_recompute(true), 64, 64, budget);
  EXPECT_GE(max, 5);
  EXPECT_LE(training_plan_bytes(*be, with_recompute(true), max, 64, 64), budget);
  EXPECT_GT(training_plan_bytes(*be, with_recompute(true), max + 1, 64, 64), budget);
}

// ---- the command line ------------------------------------------------------------------------------

using test::run_cxr;
using test::ScratchDir;

nlohmann::json plan_json(const ScratchDir& dir, const std::string& args) {
  const auto r = run_cxr(dir, "plan --device cpu --batch 8 --size 128 --json " + args);
  EXPECT_EQ(r.status, 0) << r.err;
  return nlohmann::json::parse(r.out);
}

TEST(MemoryPolicyCli, PlanChoosesThePolicyWithinTheBudget) {
  ScratchDir dir("policy_plan");
  const auto roomy = plan_json(dir, "");
  EXPECT_EQ(roomy["recompute"], "bn-relu");
  const size_t keep = roomy["total_bytes"];
  const auto frugal = plan_json(dir, "--recompute bn-relu+bottleneck");
  const size_t small = frugal["total_bytes"];
  ASSERT_LT(small, keep);
  // A budget between the two plans: auto switches to recomputing bottlenecks, and fits.
  const auto fitted = plan_json(dir, "--memory-budget " + std::to_string((small + keep) / 2));
  EXPECT_EQ(fitted["recompute"], "bn-relu+bottleneck");
  EXPECT_EQ(fitted["total_bytes"], small);
  EXPECT_EQ(fitted["fits_budget"], true);
  EXPECT_GE(fitted["max_batch"].get<int64_t>(), 8);
  // Below both: the plan is shown, over budget, with the largest batch that would fit.
  const auto over = plan_json(dir, "--memory-budget " + std::to_string(small - 1));
  EXPECT_EQ(over["fits_budget"], false);
  EXPECT_LT(over["max_batch"].get<int64_t>(), 8);
  // The plan says which budget it used: the CPU's default is host RAM (a GPU's, its free memory).
  EXPECT_EQ(roomy["memory_budget_source"], "host RAM");
  EXPECT_EQ(fitted["memory_budget_source"], "--memory-budget");
}

TEST(MemoryPolicyCli, BenchRefusesABudgetNothingFits) {  // train shares apply_memory_policy
  ScratchDir dir("policy_fail");
  auto r = run_cxr(dir, "bench --device cpu --batch 8 --size 128 --steps 1 --warmup 0 --memory-budget 10M");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("does not fit --memory-budget 10.00 MiB"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("largest batch that fits: 0"), std::string::npos) << r.err;
  // A named policy with a budget it exceeds.
  r = run_cxr(dir, "bench --device cpu --batch 8 --size 128 --steps 1 --recompute bn-relu --memory-budget 100M");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--recompute bn-relu plans"), std::string::npos) << r.err;
  // bench runs a step under the frugal policy and says so.
  r = run_cxr(dir, "bench --device cpu --batch 2 --size 64 --steps 1 --warmup 0 --recompute bn-relu+bottleneck --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto bench = nlohmann::json::parse(r.out);
  EXPECT_EQ(bench["recompute"], "bn-relu+bottleneck");
  // The measured peak (here the process's peak RSS) beside cxr's own allocations, which it holds.
  EXPECT_EQ(bench["peak_bytes_kind"], "process peak RSS");
  EXPECT_GE(bench["peak_bytes"].get<size_t>(), bench["allocated_peak_bytes"].get<size_t>());
  EXPECT_GE(bench["allocated_peak_bytes"].get<size_t>(), bench["arena_bytes"].get<size_t>());
}

}  // namespace
}  // namespace cxr
