// The fuzz targets' shared pieces: the readers take paths, so each input is written to a
// per-process temporary file first (one per suffix, since some readers decide by the name).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace cxr::fuzz {

inline std::string input_file(const uint8_t* data, size_t size, const char* suffix) {
  const std::string path = "/tmp/cxr_fuzz_" + std::to_string(::getpid()) + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  if (std::fclose(f) != 0) std::abort();
  return path;
}

}  // namespace cxr::fuzz

namespace cxr::fuzz {

// With CXR_FUZZ_EXPLAIN set (replaying a corpus by hand), says what happened to each input: that a
// seed is accepted shows that the fuzzer starts deep in the reader, not at its first refusal.
inline void explain(const char* outcome, const char* detail = "") {
  static const bool on = std::getenv("CXR_FUZZ_EXPLAIN") != nullptr;
  if (on) std::fprintf(stderr, "%s%s%s\n", outcome, *detail ? ": " : "", detail);
}

}  // namespace cxr::fuzz
