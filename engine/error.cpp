#include "engine/error.h"

namespace cxr {

void throw_error(const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << file << ":" << line << ": " << msg;
  throw Error(os.str());
}

}  // namespace cxr
