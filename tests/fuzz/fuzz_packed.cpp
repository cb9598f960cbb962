// libFuzzer target: the packed-dataset reader (io/packed.h PackedDataset: structure, types, extents,
// label/split values and checksums; every image read through read_batch) on HDF5 files mutated from
// a small real packed file (seed from tests/fuzz/make_hdf5_seeds.cpp). Any input either opens and
// reads or throws cxr::Error.
#include <cstdlib>
#include <numeric>
#include <vector>

#include "engine/error.h"
#include "io/packed.h"
#include "io/isolated_read.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // In-process, where the sanitizers see every fault of our reader and of libhdf5 below it (the
  // tools read such files in a child process first: Note [untrusted files]).
  cxr::io::set_isolated_reads(false);
  const std::string path = cxr::fuzz::input_file(data, size, ".h5");
  try {
    const cxr::io::PackedDataset ds(path);
    if (ds.labels().size() != static_cast<size_t>(ds.size()) * ds.class_names().size()) std::abort();
    if (ds.split().size() != static_cast<size_t>(ds.size())) std::abort();
    // The seeds hold a few images of 8x8; a mutated header may declare more, which open() must have
    // checked against the file's real extents. Read at most 64 of them.
    const int64_t n = std::min<int64_t>(ds.size(), 64);
    std::vector<int64_t> idx(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), 0);
    std::vector<uint8_t> out(static_cast<size_t>(n * ds.image_bytes()));
    ds.read_batch(idx.data(), n, out.data());
    cxr::fuzz::explain("read");
  } catch (const cxr::Error& e) {
    cxr::fuzz::explain("refused", e.what());
  }
  return 0;
}
