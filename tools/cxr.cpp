// cxr: train, evaluate and explain chest X-ray classifiers (DenseNet121 on CPU or CUDA).
#include <csignal>
#include <cstdio>
#include <exception>

#include <hdf5.h>

#include "engine/comm.h"
#include "engine/library_versions.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  // Past a file-size limit (ulimit -f) a write fails with EFBIG instead of killing the process with
  // SIGXFSZ, so every writer reports the file and the reason, and removes its temporary file.
  std::signal(SIGXFSZ, SIG_IGN);
  // An HDF5 file whose close failed (its flush hit a full disk) stays in HDF5's tables, and HDF5's
  // own exit handler then crashes closing it again (seen with 1.10.8). Every file is closed by its
  // owner or abandoned after an error that has been reported, so nothing is lost without it.
  H5dont_atexit();
  CLI::App app{"cxr: a chest X-ray diagnosis engine (DenseNet121 on CPU or CUDA)", "cxr"};
  app.require_subcommand(1);
  // The loaded cuDNN and cuBLAS beside the compiled ones (no GPU needed to read them).
  app.set_version_flag("--version", [] { return "cxr 0.1.0\n" + cxr::cuda_library_versions(); });
  cxr::cli::add_model_commands(app);
  cxr::cli::add_data_commands(app);
  cxr::cli::add_weights_commands(app);
  cxr::cli::add_train_commands(app);
  cxr::cli::add_plan_commands(app);
  cxr::cli::add_profile_commands(app);
  cxr::cli::add_verify_commands(app);
  cxr::cli::add_gradcam_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();  // a command's own status (verify's findings, train's Ctrl-C), already reported
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // One line, in the same form as every other failure (CLI11's own is two lines, unprefixed).
    std::fprintf(stderr, "cxr: error: %s (run with --help for the options)\n", e.what());
    return e.get_exit_code();
  } catch (const std::exception& e) {
    // One rank of a data-parallel job: the others may be waiting for it in a collective; end them all.
    if (cxr::launched_by_mpi() && cxr::mpi_compiled() && cxr::process_comm().size() > 1)
      cxr::process_comm().abort(e.what(), 1);
    std::fprintf(stderr, "cxr: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
