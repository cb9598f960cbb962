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

void step_fault(long step) {
  static const struct StepFault {
    long step = 0;
    bool hang = false;
    StepFault() {
      const char* v = std::getenv("CXR_FAULT_STEP");
      if (!v || !*v) return;
      step = std::atol(v);
      const char* colon = std::strchr(v, ':');
      hang = colon && std::strcmp(colon + 1, "hang") == 0;
    }
  } fault;
  if (fault.step <= 0 || step != fault.step) return;
  if (!fault.hang) ::kill(::getpid(), SIGKILL);
  for (;;) ::pause();  // signals still end it (the launcher's SIGKILL)
}

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
