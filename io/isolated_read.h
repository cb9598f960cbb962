// Reading untrusted files through libraries that crash or hang on some malformed ones (libhdf5,
// GDCM): the read runs in a forked child first. See Note [untrusted files] in io/isolated_read.cpp.
#pragma once
#include <functional>
#include <string>

namespace cxr::io {

// Runs `work` in a forked child with a deadline and returns what it returned (bytes through a pipe).
// Throws cxr::Error naming `path` when the child crashed (a signal, a failed assertion, a
// sanitizer's report), did not finish in time, or threw (then with the child's own message, so the
// error reads as it would have in process). `library` names what read the file in the messages
// ("the HDF5 library", "GDCM"). Inside an isolated read (the child, nested calls) and with
// isolation off, `work` runs here directly.
std::string run_isolated(const std::string& path, const char* library, const std::function<std::string()>& work);

// Nesting depth of isolated reads on this thread (guarded_hdf5_read).
extern thread_local int isolated_depth;

// run_isolated for an HDF5 read whose result is not sent back: it only proves that libhdf5
// survives this file along this code path.
void check_hdf5_in_child(const std::string& path, const std::function<void()>& read);

// check_hdf5_in_child, then `read` here, returning what it returns (the work is done twice).
template <typename F>
auto guarded_hdf5_read(const std::string& path, F&& read) -> decltype(read()) {
  check_hdf5_in_child(path, [&] { (void)read(); });
  struct Nest {
    Nest() { ++isolated_depth; }
    ~Nest() { --isolated_depth; }
  } nest;
  return read();
}

// Process-wide switch, on by default (CXR_ISOLATE=0 in the environment turns it off); the deadline
// is CXR_ISOLATE_SECONDS (default 300). The fuzz targets turn it off: they test the readers and
// the libraries below them in-process, where the sanitizers see every fault.
void set_isolated_reads(bool on);
bool isolated_reads_enabled();

}  // namespace cxr::io
