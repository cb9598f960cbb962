// Checksums of what our files store (RELIABILITY.md: corruption is detected, not trained on): XXH3
// 64-bit (Debian's libxxhash) of the stored bytes, ~30 GB/s, kept beside the data it covers: an
// attribute `cxr_xxh3` on each float dataset of weight files and checkpoints (io/hdf5.h write_floats)
// and on the packed file's small datasets, and one per image in the packed file's /image_xxh3.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace cxr::io {

inline constexpr const char* kDigestAttr = "cxr_xxh3";

uint64_t digest64(const void* data, size_t bytes);
std::string digest_text(uint64_t d);  // 16 hex digits

}  // namespace cxr::io
