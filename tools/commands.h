// The cxr command-line tool: each group of subcommands registers itself on the root CLI11 app.
// Conventions (../shared/guide/CLI.md): results on stdout (a table, or JSON with --json), progress
// and diagnostics on stderr, exit 0 on success and non-zero with a one-line reason on failure.
#pragma once
#include <CLI/CLI.hpp>

namespace cxr::cli {

void add_model_commands(CLI::App& app);  // model-info, bench          (tools/cmd_model.cpp)
void add_data_commands(CLI::App& app);   // synth, prepare, split-check, stats (tools/cmd_data.cpp)
void add_weights_commands(CLI::App& app);  // weights inspect, weights convert (tools/cmd_weights.cpp)
void add_train_commands(CLI::App& app);  // train, evaluate, predict   (tools/cmd_train.cpp)
void add_plan_commands(CLI::App& app);   // plan                      (tools/cmd_plan.cpp)
void add_gradcam_commands(CLI::App& app);  // gradcam, report         (tools/cmd_gradcam.cpp)

}  // namespace cxr::cli
