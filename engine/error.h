// Errors: one exception type and one family of checks that report the failing statement, file,
// line and (where relevant) the shapes involved. Library code never calls exit().
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace cxr {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace cxr

// CXR_CHECK(cond, parts...): throws cxr::Error "file:line: check `cond` failed: parts..." when cond is
// false; file is relative to the source tree (-fmacro-prefix-map in CMakeLists.txt).
#define CXR_CHECK(cond, ...)                                                                      \
  do {                                                                                            \
    if (!(cond))                                                                                  \
      ::cxr::throw_error(__FILE__, __LINE__,                                                      \
                         ::cxr::detail::concat("check `", #cond, "` failed: ", ##__VA_ARGS__));  \
  } while (0)

// CXR_FAIL(parts...): an error for the user, "parts..." alone. Its message says what is wrong with
// what they gave (a file, a dataset, a value), so the engine's source location stays out of it; an
// internal invariant uses CXR_CHECK, whose location (relative to the source tree) helps a bug report.
#define CXR_FAIL(...) throw ::cxr::Error(::cxr::detail::concat(__VA_ARGS__))
