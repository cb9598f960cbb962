// libFuzzer target: the DICOM reader (io/dicom.h: GDCM's parser and codecs, then our PS3.3 C.11 grey
// pipeline) on files mutated from small DICOMs of several writers (pydicom, DCMTK, GDCM; seeds made by
// tests/fixtures/make_dicom_fixtures.py). Any input decodes to the size it declares or is refused
// with a reason.
#include <cstdlib>

#include "engine/error.h"
#include "io/dicom.h"
#include "io/isolated_read.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // In-process, where the sanitizers see every fault of our reader and of GDCM below it (the tools
  // decode DICOMs in a child process: Note [untrusted files]).
  cxr::io::set_isolated_reads(false);
  const std::string path = cxr::fuzz::input_file(data, size, ".dcm");
  cxr::io::GreyImage img;
  cxr::io::DicomInfo info;
  std::string error;
  try {
    if (cxr::io::decode_dicom(path, cxr::io::DicomOptions{}, &img, &info, &error)) {
      if (img.width <= 0 || img.height <= 0) std::abort();
      if (img.pixels.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height)) std::abort();
      cxr::fuzz::explain("decoded");
    } else if (error.empty()) {
      std::abort();  // a refusal always says why
    } else {
      cxr::fuzz::explain("refused", error.c_str());
    }
  } catch (const cxr::Error& e) {
    cxr::fuzz::explain("refused (thrown)", e.what());
  }
  return 0;
}
