// libFuzzer target: the weight-file reader (io/weights.h scan_weight_file, identify_model;
// io/checkpoint.h load_weights) on HDF5 files mutated from small real ones: a cxr model file, a
// Keras legacy file with h5py 2.x's fixed-length strings and one in Keras 3's layout (seeds from
// tests/fuzz/make_hdf5_seeds.cpp and make_hdf5_seeds.py). Any input either loads or throws
// cxr::Error, and a refused load leaves the buffers as they were.
#include <cstdlib>
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
    cxr::io::WeightFile file = cxr::io::scan_weight_file(path);
    (void)cxr::io::identify_model(file);
  } catch (const cxr::Error&) {
  }
  const std::vector<float> params0(static_cast<size_t>(table.trainable_count()), 0.5f),
      state0(static_cast<size_t>(table.state_count()), 0.25f);
  std::vector<float> params = params0, state = state0;
  try {
    (void)cxr::io::load_weights(path, table, params, state, cxr::io::HeadPolicy::LoadOrInit, 1);
    cxr::fuzz::explain("loaded");
  } catch (const cxr::Error& e) {
    cxr::fuzz::explain("refused", e.what());
    if (params != params0 || state != state0) std::abort();  // a refused load changes nothing
  }
  return 0;
}
