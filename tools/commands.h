// The cxr command-line tool: each group of subcommands registers itself on the root CLI11 app.
// Conventions (../shared/guide/CLI.md): results on stdout (a table, or JSON with --json), progress
// and diagnostics on stderr, exit 0 on success and non-zero with a one-line reason on failure.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <limits>
#include <string>

#include "io/dicom.h"
#include "io/image.h"

namespace cxr::cli {

void add_model_commands(CLI::App& app);  // model-info, bench          (tools/cmd_model.cpp)
void add_data_commands(CLI::App& app);   // synth, prepare, split-check, stats (tools/cmd_data.cpp)
void add_weights_commands(CLI::App& app);  // weights inspect, weights convert (tools/cmd_weights.cpp)
void add_train_commands(CLI::App& app);  // train, evaluate, predict   (tools/cmd_train.cpp)
void add_plan_commands(CLI::App& app);   // plan                      (tools/cmd_plan.cpp)
void add_profile_commands(CLI::App& app);  // profile                 (tools/cmd_profile.cpp)
void add_verify_commands(CLI::App& app);   // verify                  (tools/cmd_verify.cpp)
void add_gradcam_commands(CLI::App& app);  // gradcam, report         (tools/cmd_gradcam.cpp)

// Validators for numeric options, so that a value the engine cannot use is refused by the parser
// with the option's name instead of failing (or wrapping) deep inside.
inline const CLI::Validator kAtLeastOne = CLI::Range(int64_t(1), std::numeric_limits<int64_t>::max()).description("INT>=1");
inline const CLI::Validator kThreads = CLI::Range(0, 1024).description("0 (all cores) to 1024");
// An image side DenseNet can take: it halves the image five times before its final map.
inline const CLI::Validator kImageSide = CLI::Range(32, 8192).description("32 to 8192 pixels");
// 0 is "the default" for options that take the model's or the dataset's size otherwise.
inline const CLI::Validator kImageSideOrDefault =
    CLI::Validator([](std::string& v) { return v == "0" ? std::string() : kImageSide(v); }, "0 or 32 to 8192");

// --max-image-pixels on the commands that decode images (io/image.h: decompression bombs).
inline void add_max_image_pixels(CLI::App* c) {
  c->add_option_function<int64_t>(
       "--max-image-pixels", [](const int64_t& v) { io::set_max_image_pixels(v); },
       "Refuse images declaring more pixels (default " + std::to_string(io::kDefaultMaxImagePixels) + ")")
      ->check(kAtLeastOne);
}

// --dicom-window on the commands that decode images (io/dicom.h: which Window Center/Width pair, or
// without windows which VOI LUT, renders a DICOM image).
inline void add_dicom_window(CLI::App* c) {
  c->add_option_function<int>(
       "--dicom-window", [](const int& v) { io::set_dicom_options(io::DicomOptions{v}); },
       "DICOM: apply the file's N-th window (Window Center/Width), or without windows its N-th VOI LUT "
       "(default 1)")
      ->check(CLI::Range(1, 1000));
}

}  // namespace cxr::cli
