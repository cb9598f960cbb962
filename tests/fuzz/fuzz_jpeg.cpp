// libFuzzer target: JPEG decoding alone (stb_image through io/image.h decode_grey_memory, with its
// size checks before any allocation). Inputs that do not start with a JPEG marker are skipped so
// that the time goes into the JPEG decoder (the png target covers the format dispatch). Any JPEG
// must decode to the size its header declares or be refused with a reason.
#include <cstdlib>

#include "io/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || data[0] != 0xFF || data[1] != 0xD8) return 0;
  cxr::io::GreyImage img;
  std::string error;
  if (cxr::io::decode_grey_memory(data, size, &img, &error, /*png_fast_path=*/false)) {
    if (img.width <= 0 || img.height <= 0) std::abort();
    if (img.pixels.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height)) std::abort();
  } else if (error.empty()) {
    std::abort();  // a refusal always says why
  }
  return 0;
}
