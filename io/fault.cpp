#include "io/fault.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace cxr::io {
namespace {

struct FaultConfig {
  long kill_at = 0;
  const char* log = nullptr;
  FaultConfig() {
    if (const char* k = std::getenv("CXR_FAULT_KILL_AT")) kill_at = std::atol(k);
    log = std::getenv("CXR_FAULT_LOG");
    if (log && !*log) log = nullptr;
  }
};

const FaultConfig& config() {
  static const FaultConfig c;
  return c;
}

std::atomic<long> g_points{0};

}  // namespace

void fault_point(const char* name) {
  const FaultConfig& c = config();
  if (c.kill_at <= 0 && !c.log) return;
  const long n = ++g_points;
  if (c.log) {
    if (std::FILE* f = std::fopen(c.log, "a")) {
      std::fprintf(f, "%ld %s\n", n, name);
      std::fclose(f);
    }
  }
  if (n == c.kill_at) ::kill(::getpid(), SIGKILL);
}

}  // namespace cxr::io
