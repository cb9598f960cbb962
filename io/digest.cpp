#include "io/digest.h"

// Inlined (xxhash.h's XXH_INLINE_ALL) so that XXH3 is compiled for this build's -march (AVX2 on
// x86-64-v3) instead of the shared library's baseline SSE2 code path.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstdio>

namespace cxr::io {

uint64_t digest64(const void* data, size_t bytes) { return XXH3_64bits(data, bytes); }

std::string digest_text(uint64_t d) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(d));
  return b;
}

}  // namespace cxr::io
