// cxr report: one self-contained report.html of a run folder. Every chart and image is inlined as a
// data: URI (SVG or PNG, base64), so the file can be mailed or archived alone; no scripts, fonts or
// other resources are fetched. Parts the run does not have are named in the report, never fatal.
//
// The run folder, as the demo lays it out (each part optional):
//   stats/class_balance.{svg,png}                       cxr stats
//   run/metrics.jsonl, run/training_curves.{svg,png}    cxr train (run/config.json if present)
//   eval/metrics.json, eval/roc_curves.{svg,png}        cxr evaluate
//   gradcam/*.png, gradcam/gradcam.json                 cxr gradcam
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cxr::app {

struct ReportOptions {
  std::string run_dir;
  std::string out;           // default: RUN_DIR/report.html
  int64_t max_gallery = 48;  // Grad-CAM overlays shown at most (the rest are counted)
  // Adds a small script that, after loading, records broken images (naturalWidth == 0), uncaught
  // errors, failed resource loads and console.error calls into <pre id="cxr-check"> (for tests
  // that load the page in a headless browser). Off in normal reports, which carry no script.
  bool check_script = false;
};

struct ReportResult {
  std::string path;
  std::vector<std::string> missing;  // one line per part not found
  int64_t images = 0;                // inlined images and charts
  int64_t bytes = 0;
};

// Builds the page (no file written).
std::string report_html(const ReportOptions& opt, ReportResult* info);
// Writes the page (atomically) and says what it holds.
ReportResult write_report(const ReportOptions& opt);

// RFC 4648 base64 (with padding).
std::string base64_encode(const std::string& bytes);
// &, <, >, " and ' escaped for HTML text and attribute values.
std::string html_escape(const std::string& s);

}  // namespace cxr::app
