// libFuzzer target: the official box CSV reader (io/csv.h).
#include "engine/error.h"
#include "io/csv.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cxr::fuzz::input_file(data, size, ".csv");
  try {
    (void)cxr::io::read_bbox_csv(path);
  } catch (const cxr::Error&) {
  }
  return 0;
}
