// --recompute and --memory-budget, shared by `cxr plan`, `cxr bench` and `cxr train`: which
// activations a training step recomputes in backward instead of keeping (engine/model.h), chosen
// by hand or, with "auto", the fastest policy whose memory plan fits the budget.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "engine/model.h"

namespace cxr::app {

struct MemoryPolicyOptions {
  std::string recompute = "auto";  // auto, bn-relu, bn-relu+bottleneck
  std::string budget;              // empty: the backend's default_memory_budget()
};

void add_memory_policy_options(CLI::App* cmd, MemoryPolicyOptions* o);

// The budget: --memory-budget, or the backend's default (a GPU's free memory, host RAM), with its source.
MemoryBudget memory_budget(Backend& be, const MemoryPolicyOptions& o);

// cfg with the policy applied for a training step of this batch and size. "auto" takes the
// fastest policy that fits the budget; a named policy is taken as asked, and checked against the
// budget only when one was given. Fails naming the budget, the smallest plan and the largest batch
// that would fit when nothing does.
DenseNetConfig apply_memory_policy(Backend& be, DenseNetConfig cfg, int64_t batch, int64_t height, int64_t width,
                                   const MemoryPolicyOptions& o);

// The largest batch (at most 2^20) whose plan fits the budget, given the plan's bytes as a function
// of the batch (it grows monotonically with it); 0 if none.
int64_t largest_batch(const std::function<size_t(int64_t)>& plan_bytes, size_t budget);
// largest_batch for a training step under cfg.
int64_t max_training_batch(Backend& be, const DenseNetConfig& cfg, int64_t height, int64_t width, size_t budget);

}  // namespace cxr::app
