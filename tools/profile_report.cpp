#include "tools/profile_report.h"

#include <omp.h>

#if defined(__FMA__) && defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

namespace cxr::app {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// FLOPs of `iters` rounds of 12 independent FMA chains on one thread (enough chains to cover the
// FMA latency on two ports).
double fma_loop(int64_t iters, float seed) {
#if defined(__FMA__) && defined(__AVX2__)
  __m256 acc[12];
  for (int k = 0; k < 12; ++k) acc[k] = _mm256_set1_ps(seed + float(k));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < 12; ++k) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
  __m256 s = acc[0];
  for (int k = 1; k < 12; ++k) s = _mm256_add_ps(s, acc[k]);
  float out[8];
  _mm256_storeu_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return double(iters) * 12 * 8 * 2;
#else
  float acc[12];
  for (int k = 0; k < 12; ++k) acc[k] = seed + float(k);
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < 12; ++k) acc[k] = std::fma(acc[k], 0.999999f, 1e-7f);
  volatile float sink = acc[0];
  (void)sink;
  return double(iters) * 12 * 2;
#endif
}

}  // namespace

Peaks measure_cpu_peaks(int threads) {
  Peaks p;
  threads = std::max(1, threads);
  // FMA: each thread runs the loop; the rate is all threads' FLOPs over the wall time. Best of 3.
  for (int rep = 0; rep < 3; ++rep) {
    double flops = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += fma_loop(int64_t(2) << 20, float(omp_get_thread_num()));
    p.gflops = std::max(p.gflops, flops / seconds_since(t0) * 1e-9);
  }
  // Streaming copy of 256 MiB (twice the last-level caches of any machine we run on), read + write.
  const size_t n = (size_t(256) << 20) / sizeof(float);
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]);
#pragma omp parallel for num_threads(threads)
  for (int64_t i = 0; i < int64_t(n); ++i) a[size_t(i)] = float(i & 1023), b[size_t(i)] = 0;  // first touch
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for num_threads(threads)
    for (int64_t i = 0; i < int64_t(n); ++i) b[size_t(i)] = a[size_t(i)];
    p.gbps = std::max(p.gbps, 2.0 * double(n * sizeof(float)) / seconds_since(t0) * 1e-9);
  }
  volatile float sink = b[n / 2];
  (void)sink;
  p.how = "measured: FMA loop and streaming copy on " + std::to_string(threads) + " thread" + (threads > 1 ? "s" : "");
  return p;
}

std::vector<ProfileRow> aggregate(const std::vector<ProfiledOp>& ops, const std::string& by, int64_t steps,
                                  double step_ms, const Peaks& peaks, const std::string& sort) {
  std::map<std::string, ProfileRow> rows;
  for (const ProfiledOp& o : ops) {
    const std::string& key = by == "op" ? o.op : by == "block" ? o.block : o.layer;
    ProfileRow& r = rows[key.empty() ? std::string("(outside the model)") : key];
    r.key = key.empty() ? "(outside the model)" : key;
    ++r.calls;
    r.total_ms += o.dur_us * 1e-3;
    r.flops += o.flops;
    r.bytes += o.bytes;
  }
  std::vector<ProfileRow> out;
  const double s = double(std::max<int64_t>(1, steps));
  for (auto& [k, r] : rows) {
    const double sec = r.total_ms * 1e-3;
    r.mean_ms = r.total_ms / double(r.calls);
    r.gflops = sec > 0 ? r.flops / sec * 1e-9 : 0;
    r.gbps = sec > 0 ? r.bytes / sec * 1e-9 : 0;
    if (r.flops > 0 && peaks.gflops > 0 && peaks.gbps > 0) {
      const double intensity = r.flops / std::max(r.bytes, 1.0);
      r.roofline = r.gflops / std::min(peaks.gflops, intensity * peaks.gbps);
    } else if (peaks.gbps > 0) {
      r.roofline = r.gbps / peaks.gbps;
    }
    // Per step.
    r.calls = int64_t(std::llround(double(r.calls) / s));
    r.total_ms /= s;
    r.flops /= s;
    r.bytes /= s;
    r.share = step_ms > 0 ? r.total_ms / step_ms : 0;
    out.push_back(r);
  }
  auto key = [&](const ProfileRow& r) -> double {
    if (sort == "calls") return double(r.calls);
    if (sort == "mean") return r.mean_ms;
    if (sort == "flops") return r.flops;
    if (sort == "roofline") return -r.roofline;  // farthest below the roofline first
    return r.total_ms;
  };
  if (sort == "name")
    std::sort(out.begin(), out.end(), [](const ProfileRow& a, const ProfileRow& b) { return a.key < b.key; });
  else
    std::stable_sort(out.begin(), out.end(), [&](const ProfileRow& a, const ProfileRow& b) { return key(a) > key(b); });
  return out;
}

nlohmann::json rows_json(const std::vector<ProfileRow>& rows) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : rows)
    j.push_back({{"key", r.key}, {"calls", r.calls}, {"total_ms", r.total_ms}, {"mean_ms", r.mean_ms},
                 {"share", r.share}, {"flops", r.flops}, {"bytes", r.bytes}, {"gflops", r.gflops},
                 {"gbps", r.gbps}, {"roofline", r.roofline}});
  return j;
}

void print_rows(const std::vector<ProfileRow>& rows, const std::string& by, double step_ms) {
  std::printf("%-28s %6s %10s %7s %9s %10s %10s %8s %7s %9s\n", by.c_str(), "calls", "total ms", "share", "mean ms",
              "GFLOP", "MB", "GFLOP/s", "GB/s", "roofline");
  double total = 0;
  for (const auto& r : rows) {
    total += r.total_ms;
    std::printf("%-28.28s %6ld %10.2f %6.1f%% %9.3f %10.3f %10.1f %8.1f %7.1f %8.1f%%\n", r.key.c_str(),
                long(r.calls), r.total_ms, 100 * r.share, r.mean_ms, r.flops * 1e-9, r.bytes * 1e-6, r.gflops, r.gbps,
                100 * r.roofline);
  }
  std::printf("%-28s %6s %10.2f %6.1f%% of the %.2f ms step\n", "(all ops)", "", total,
              step_ms > 0 ? 100 * total / step_ms : 0.0, step_ms);
}

nlohmann::json chrome_trace(const ProfilingBackend& prof, const std::vector<std::pair<double, double>>& steps,
                            const std::string& process_name, const std::vector<TraceSpan>& loader_waits) {
  using nlohmann::json;
  json events = json::array();
  enum { kOps = 1, kLoader = 2, kUpload = 3 };
  events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", 1}, {"args", {{"name", process_name}}}});
  auto thread_name = [&](int tid, const std::string& name) {
    events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", 1}, {"tid", tid}, {"args", {{"name", name}}}});
  };
  thread_name(kOps, prof.device_timed() ? "cuda stream" : "cpu ops");
  bool uploads = false;
  for (const auto& o : prof.ops()) uploads = uploads || o.phase == "upload";
  if (uploads) thread_name(kUpload, "upload");
  if (!loader_waits.empty()) thread_name(kLoader, "loader (waiting for the next batch)");
  for (size_t i = 0; i < steps.size(); ++i)
    events.push_back({{"name", "step " + std::to_string(i + 1)}, {"cat", "step"}, {"ph", "X"}, {"pid", 1},
                      {"tid", kOps}, {"ts", steps[i].first}, {"dur", steps[i].second}});
  static const char* kinds[] = {"phase", "block", "layer"};
  for (const auto& r : prof.ranges())
    events.push_back({{"name", r.name}, {"cat", kinds[std::min(r.depth, 2)]}, {"ph", "X"}, {"pid", 1},
                      {"tid", r.depth == 0 && r.name == "upload" ? kUpload : kOps}, {"ts", r.start_us},
                      {"dur", r.dur_us}});
  for (const auto& o : prof.ops())
    events.push_back({{"name", o.op},
                      {"cat", "op"},
                      {"ph", "X"},
                      {"pid", 1},
                      {"tid", o.phase == "upload" ? kUpload : kOps},
                      {"ts", o.start_us},
                      {"dur", o.dur_us},
                      {"args",
                       {{"layer", o.layer}, {"block", o.block}, {"phase", o.phase}, {"shapes", o.shapes},
                        {"flops", o.flops}, {"bytes", o.bytes}, {"step", o.step}}}});
  for (const auto& w : loader_waits)
    events.push_back({{"name", "loader.next"}, {"cat", "loader"}, {"ph", "X"}, {"pid", 1}, {"tid", kLoader},
                      {"ts", w.start_us}, {"dur", w.dur_us}, {"args", {{"step", w.step}}}});
  return json{{"traceEvents", events}, {"displayTimeUnit", "ms"}};
}

void print_comparison(const nlohmann::json& a, const nlohmann::json& b, const std::string& a_name,
                      const std::string& b_name, size_t top) {
  for (const char* by : {"op", "block"}) {
    std::map<std::string, std::pair<double, double>> ms;
    const std::string key = std::string("by_") + by;
    for (const auto& r : a.at(key)) ms[r.at("key").get<std::string>()].first = r.at("total_ms").get<double>();
    for (const auto& r : b.at(key)) ms[r.at("key").get<std::string>()].second = r.at("total_ms").get<double>();
    std::vector<std::pair<std::string, std::pair<double, double>>> rows(ms.begin(), ms.end());
    std::sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) {
      return std::fabs(x.second.second - x.second.first) > std::fabs(y.second.second - y.second.first);
    });
    std::printf("%s%-28s %12s %12s %12s %8s\n", by == std::string("op") ? "" : "\n", by, "A ms/step", "B ms/step",
                "B - A", "B / A");
    for (size_t i = 0; i < rows.size() && i < top; ++i) {
      const auto& [k, v] = rows[i];
      std::printf("%-28.28s %12.2f %12.2f %+12.2f %8s\n", k.c_str(), v.first, v.second, v.second - v.first,
                  v.first > 0 ? (std::to_string(v.second / v.first).substr(0, 5)).c_str() : "-");
    }
  }
  const double sa = a.at("step_ms").get<double>(), sb = b.at("step_ms").get<double>();
  std::printf("\nstep: A %.2f ms (%s), B %.2f ms (%s), B / A %.3f\n", sa, a_name.c_str(), sb, b_name.c_str(),
              sa > 0 ? sb / sa : 0.0);
}

}  // namespace cxr::app
