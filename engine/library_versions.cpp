#include "engine/library_versions.h"

#include <sstream>

namespace cxr {

std::string LibraryVersion::str() const {
  std::ostringstream os;
  os << major << "." << minor << "." << patch;
  return os.str();
}

LibraryVersion decode_library_version(long encoded) {
  return LibraryVersion{int(encoded / 10000), int(encoded / 100 % 100), int(encoded % 100)};
}

// Note [cuDNN version policy]
VersionVerdict check_library_version(const std::string& library, LibraryVersion compiled,
                                     LibraryVersion loaded) {
  VersionVerdict v;
  const std::string both =
      "compiled against " + library + " " + compiled.str() + " but loaded " + loaded.str();
  if (loaded.major != compiled.major) {
    v.refuse = true;
    v.message = "this build was " + both + ": another major version has another ABI. Put " + library + " " +
                std::to_string(compiled.major) +
                ".x first on LD_LIBRARY_PATH, or rebuild against the loaded one's headers "
                "(scripts/gpu_check.sh pack does, from PyTorch's wheel)";
  } else if (loaded.minor < compiled.minor) {
    v.message = "warning: this build was " + both +
                ", an older minor: NVIDIA promises no backward "
                "compatibility within a major version; rebuild against " +
                loaded.str() + "'s headers";
  }
  return v;
}

}  // namespace cxr
