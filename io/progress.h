// Progress on stderr: a bar with the rate and the time left when stderr is a terminal, otherwise a
// plain line every few seconds. Call update() from one thread.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace cxr::io {

class Progress {
 public:
  // `total` items; `unit` names them in the rate ("images"); quiet = print nothing.
  Progress(int64_t total, std::string label, std::string unit = "images", bool quiet = false);
  void update(int64_t done);  // absolute count
  void finish();              // final line

 private:
  void print(int64_t done, bool final);
  int64_t total_;
  std::string label_, unit_;
  bool quiet_, tty_;
  int64_t start_done_ = -1;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace cxr::io
