// libFuzzer target: the official label CSV reader (io/csv.h). Any input either parses or throws
// cxr::Error; a crash, a sanitizer report, a leak or a hang is a finding.
#include "engine/error.h"
#include "io/csv.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cxr::fuzz::input_file(data, size, ".csv");
  try {
    (void)cxr::io::read_label_csv(path);
  } catch (const cxr::Error&) {
  }
  return 0;
}
