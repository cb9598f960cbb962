// libFuzzer target: the checkpoint reader (io/checkpoint.h load_weights with the training state:
// Adam moments, step, epoch, learning rate, generator and scheduler text; read_model_meta) on HDF5
// files mutated from a small real checkpoint (seed from tests/fuzz/make_hdf5_seeds.cpp). Any input
// either loads or throws cxr::Error, and a refused load leaves the buffers as they were.
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "engine/error.h"
#include "io/checkpoint.h"
#include "io/isolated_read.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/tiny_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // In-process, where the sanitizers see every fault of our reader and of libhdf5 below it (the
  // tools read such files in a child process first: Note [untrusted files]).
  cxr::io::set_isolated_reads(false);
  const std::string path = cxr::fuzz::input_file(data, size, ".h5");
  const cxr::ParamTable& table = cxr::fuzz::tiny_table();
  try {
    (void)cxr::io::read_model_meta(path);
  } catch (const cxr::Error&) {
  }
  const std::vector<float> params0(static_cast<size_t>(table.trainable_count()), 0.5f),
      state0(static_cast<size_t>(table.state_count()), 0.25f);
  std::vector<float> params = params0, state = state0;
  std::optional<cxr::io::ModelMeta> meta;
  std::optional<cxr::io::TrainingState> training;
  try {
    (void)cxr::io::load_weights(path, table, params, state, cxr::io::HeadPolicy::Require, 1, &meta, &training);
    if (training && (training->adam_m.size() != params.size() || training->adam_v.size() != params.size())) {
      const std::string sizes = "adam_m " + std::to_string(training->adam_m.size()) + ", adam_v " +
                                std::to_string(training->adam_v.size()) + ", parameters " + std::to_string(params.size());
      cxr::fuzz::explain("moments of another length accepted", sizes.c_str());
      std::abort();
    }
    cxr::fuzz::explain(training ? "loaded with training state" : "loaded");
  } catch (const cxr::Error& e) {
    cxr::fuzz::explain("refused", e.what());
    if (params != params0 || state != state0) std::abort();  // a refused load changes nothing
  }
  return 0;
}
