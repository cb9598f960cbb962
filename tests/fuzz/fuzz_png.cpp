// libFuzzer target: PNG decoding, differentially. Our 8-bit fast path (io/image.cpp, Note [PNG fast
// path]) must give stb_image's pixels wherever it accepts an image; any input must decode or be
// refused with a reason.
#include <cstdlib>
#include <cstring>

#include "io/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cxr::io::GreyImage fast, stb;
  std::string error;
  const bool stb_ok = cxr::io::decode_grey_memory(data, size, &stb, &error, /*png_fast_path=*/false);
  if (!stb_ok && error.empty()) std::abort();  // a refusal always says why
  if (cxr::io::decode_png8(data, size, &fast)) {
    if (!stb_ok) std::abort();  // the fast path accepted what stb_image refuses
    if (fast.width != stb.width || fast.height != stb.height || fast.pixels != stb.pixels) std::abort();
  }
  return 0;
}
