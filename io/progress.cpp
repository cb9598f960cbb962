#include "io/progress.h"

#include <unistd.h>

#include <cstdio>

namespace cxr::io {

Progress::Progress(int64_t total, std::string label, std::string unit, bool quiet)
    : total_(total), label_(std::move(label)), unit_(std::move(unit)), quiet_(quiet), tty_(isatty(2) == 1) {
  start_ = last_ = std::chrono::steady_clock::now();
}

void Progress::update(int64_t done) {
  if (quiet_) return;
  if (start_done_ < 0) start_done_ = done;  // a resumed run counts the rate from where it started
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (since < (tty_ ? 0.2 : 5.0)) return;
  last_ = now;
  print(done, false);
}

void Progress::finish() {
  if (quiet_) return;
  if (start_done_ < 0) start_done_ = 0;
  print(total_, true);
}

void Progress::print(int64_t done, bool final) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? static_cast<double>(done - start_done_) / secs : 0.0;
  const double left = rate > 0 ? static_cast<double>(total_ - done) / rate : 0.0;
  const double frac = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  char eta[32];
  std::snprintf(eta, sizeof eta, "%d:%02d", static_cast<int>(left) / 60, static_cast<int>(left) % 60);
  if (tty_) {
    const int width = 30, filled = static_cast<int>(frac * width);
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %.0f %s/s, %s left   %s", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), rate, unit_.c_str(), eta,
                 final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s: %lld/%lld (%.0f%%) %.0f %s/s, %s left\n", label_.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), 100.0 * frac, rate, unit_.c_str(), eta);
  }
  std::fflush(stderr);
}

}  // namespace cxr::io
