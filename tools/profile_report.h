// What `cxr profile` makes of the ops a ProfilingBackend recorded (engine/profiler.h): tables by op,
// layer or block with FLOPs, bytes and roofline shares, the Chrome/Perfetto trace, and the comparison
// of two runs' JSON.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "engine/profiler.h"

namespace cxr::app {

// Peak FP32 rate and memory bandwidth of the device the ops ran on.
struct Peaks {
  double gflops = 0, gbps = 0;
  std::string how;  // "measured: FMA loop on 2 threads, streaming copy" or "device properties"
};
// The CPU's: a loop of independent 8-wide FMAs on `threads` threads (about 0.2 s) and a streaming
// copy of 256 MiB (bytes read + written per second).
Peaks measure_cpu_peaks(int threads);

struct ProfileRow {
  std::string key;   // op kind, layer or block
  int64_t calls = 0;  // per step
  double total_ms = 0, mean_ms = 0, share = 0;  // total per step; share of the step time
  double flops = 0, bytes = 0;                 // per step
  double gflops = 0, gbps = 0;                 // achieved
  double roofline = 0;  // achieved / attainable, attainable = min(peak FLOP/s, intensity x peak bandwidth)
};

// Rows keyed by `by` ("op", "layer", "block"), per step (ops of `steps` steps), sorted by `sort`
// ("total", "calls", "mean", "flops", "roofline", "name").
std::vector<ProfileRow> aggregate(const std::vector<ProfiledOp>& ops, const std::string& by, int64_t steps,
                                  double step_ms, const Peaks& peaks, const std::string& sort = "total");

nlohmann::json rows_json(const std::vector<ProfileRow>& rows);
void print_rows(const std::vector<ProfileRow>& rows, const std::string& by, double step_ms);

// Chrome's Trace Event format (JSON object form): one "X" event per op (args: layer, block, phase,
// shapes, FLOPs, bytes) and per range (steps, phases, blocks, layers), nested on the track of the
// ops ("cpu ops" or "cuda stream"); `steps` gives each step's start and duration (microseconds).
// Extra events (the loader's waits, uploads) may be appended by the caller on other tracks.
// A span on the profiler's clock (ProfilingBackend::now_us()).
struct TraceSpan {
  double start_us = 0, dur_us = 0;
  int64_t step = 0;
};
// Ops and ranges under an "upload" range go to their own track ("upload"), and `loader_waits` (the
// time the step waited for the loader's next batch) to a "loader" track.
nlohmann::json chrome_trace(const ProfilingBackend& prof, const std::vector<std::pair<double, double>>& steps,
                            const std::string& process_name, const std::vector<TraceSpan>& loader_waits = {});

// `cxr profile --compare A.json B.json`: per-op and per-block differences of total ms per step,
// biggest first.
void print_comparison(const nlohmann::json& a, const nlohmann::json& b, const std::string& a_name,
                      const std::string& b_name, size_t top);

}  // namespace cxr::app
