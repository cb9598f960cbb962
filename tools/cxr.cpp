// cxr: train, evaluate and explain chest X-ray classifiers (DenseNet121 on CPU or CUDA).
#include <cstdio>
#include <exception>

#include "engine/library_versions.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"cxr: a chest X-ray diagnosis engine (DenseNet121 on CPU or CUDA)", "cxr"};
  app.require_subcommand(1);
  // The loaded cuDNN and cuBLAS beside the compiled ones (no GPU needed to read them).
  app.set_version_flag("--version", [] { return "cxr 0.1.0\n" + cxr::cuda_library_versions(); });
  cxr::cli::add_model_commands(app);
  cxr::cli::add_data_commands(app);
  cxr::cli::add_weights_commands(app);
  cxr::cli::add_train_commands(app);
  cxr::cli::add_plan_commands(app);
  cxr::cli::add_gradcam_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cxr: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
