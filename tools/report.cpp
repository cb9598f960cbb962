// cxr report: the run folder as one self-contained HTML page (see tools/report.h).
#include "tools/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/error.h"
#include "io/classes.h"
#include "io/fileutil.h"
#include "io/hdf5.h"
#include "io/plot.h"
#include "io/published.h"
#include "io/synth.h"

namespace cxr::app {

namespace fs = std::filesystem;
using nlohmann::json;

std::string base64_encode(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v =
        uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i < bytes.size()) {
    const bool two = i + 1 < bytes.size();
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | (two ? uint32_t(uint8_t(bytes[i + 1])) << 8 : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += two ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string html_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&#39;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

namespace {

const char* kStyle = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1180px;
padding:0 20px 40px;color:#1d2330;background:#fff;line-height:1.45}
h1{font-size:1.7em;margin:.8em 0 .1em}h2{font-size:1.3em;border-bottom:2px solid #e2e6ee;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1.05em;margin:1.2em 0 .4em}.sub{color:#5b6475;margin:0 0 1em}
nav a{margin-right:1em;color:#2458b3;text-decoration:none}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}th,td{padding:3px 9px;border-bottom:1px solid #e6e9ef;text-align:right}
th{background:#f3f5f9}td:first-child,th:first-child{text-align:left}tr.mean td{font-weight:600;border-top:2px solid #c9cfdb}
.kv td{text-align:left}.kv td:first-child{color:#5b6475}
.missing{background:#fff6e0;border-left:4px solid #e8a317;padding:6px 12px;margin:.6em 0}
.chart{max-width:100%;height:auto;border:1px solid #e6e9ef}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:14px}
figure{margin:0;border:1px solid #e6e9ef;padding:6px;background:#fafbfc}figure img{width:100%;height:auto;display:block}
figcaption{font-size:.82em;margin-top:4px;word-break:break-all}.hit{color:#17803d;font-weight:600}.miss{color:#b42318;font-weight:600}
.good{color:#17803d}.bad{color:#b42318}.mark{font-weight:600}
.synthetic{background:#eef1f6;border-left:4px solid #5b6475;padding:6px 12px;margin:.6em 0}
caption.synth-note{caption-side:top;text-align:left;white-space:nowrap;color:#5b6475;font-size:.85em;padding:0 0 2px}footer{margin-top:3em;color:#5b6475;font-size:.82em}
)";

// Records broken images, errors and console.error calls into <pre id="cxr-check"> after load.
const char* kCheckScript = R"(<script>
window.cxrErrors=[];
window.addEventListener('error',function(e){var t=e.target;
 window.cxrErrors.push(t&&t.tagName?'failed to load '+t.tagName+' '+String(t.src||t.href||'').slice(0,48):'uncaught '+e.message);},true);
(function(){var ce=console.error;console.error=function(){window.cxrErrors.push('console.error '+Array.prototype.join.call(arguments,' '));return ce.apply(console,arguments);};})();
window.addEventListener('load',function(){var im=document.images,bad=[];
 for(var i=0;i<im.length;i++){if(!im[i].complete||im[i].naturalWidth===0)bad.push(im[i].alt||('image '+i));}
 var p=document.createElement('pre');p.id='cxr-check';
 p.textContent='CXR-CHECK images='+im.length+' broken='+bad.length+' errors='+window.cxrErrors.length+'\n'+bad.concat(window.cxrErrors).join('\n');
 document.body.appendChild(p);});
</script>
)";

std::string fmt(double v, int decimals = 3) {
  if (!std::isfinite(v)) return "&ndash;";
  char b[48];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}
std::string fmt(const json& v, int decimals = 3) {
  return v.is_number() ? fmt(v.get<double>(), decimals) : std::string("&ndash;");
}
std::string scalar_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char b[48];
    std::snprintf(b, sizeof b, "%.6g", v.get<double>());
    return b;
  }
  return v.dump();
}

// Builds the page section by section; `missing` collects what the run lacks.
class Page {
 public:
  Page(const ReportOptions& opt, ReportResult* info) : opt_(opt), info_(info), dir_(opt.run_dir) {}

  std::string build() {
    CXR_CHECK(fs::is_directory(dir_), opt_.run_dir, " is not a folder");
    load();
    detect_origin();
    std::ostringstream body;
    body << config_section() << classes_section() << training_section() << roc_section() << auc_section()
         << thresholds_section() << gradcam_section();
    std::ostringstream os;
    os << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
       << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
       << "<link rel=\"icon\" href=\"data:,\">\n"  // no favicon request
       << "<title>cxr report: " << html_escape(run_name()) << title_suffix() << "</title>\n<style>" << kStyle
       << "</style>\n";
    if (opt_.check_script) os << kCheckScript;
    os << "</head>\n<body>\n<h1>cxr report: " << html_escape(run_name()) << title_suffix()
       << "</h1>\n<p class=\"sub\">" << html_escape(opt_.run_dir) << " &middot; generated " << now() << "</p>\n"
       << origin_banner() << "<nav>"
       << "<a href=\"#config\">Configuration</a><a href=\"#classes\">Class frequencies</a>"
       << "<a href=\"#training\">Training</a><a href=\"#roc\">ROC</a><a href=\"#auc\">AUC</a>"
       << "<a href=\"#thresholds\">Thresholds</a><a href=\"#gradcam\">Grad-CAM</a></nav>\n";
    if (!info_->missing.empty()) {
      os << "<div class=\"missing\"><b>Not in this run</b> (the report shows the rest):<ul>";
      for (const auto& m : info_->missing) os << "<li>" << html_escape(m) << "</li>";
      os << "</ul></div>\n";
    }
    os << body.str();
    os << footer() << "</body></html>\n";
    return os.str();
  }

 private:
  std::string run_name() const {
    std::string n = fs::path(opt_.run_dir).lexically_normal().filename().string();
    if (n.empty()) n = fs::path(opt_.run_dir).lexically_normal().parent_path().filename().string();
    return n.empty() ? opt_.run_dir : n;
  }
  static std::string now() {
    std::time_t t = std::time(nullptr);
    char b[64];
    std::strftime(b, sizeof b, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
    return b;
  }
  fs::path at(const std::string& rel) const { return dir_ / rel; }
  void note_missing(const std::string& what) { info_->missing.push_back(what); }
  static std::string missing_box(const std::string& text) {
    return "<p class=\"missing\">" + html_escape(text) + "</p>\n";
  }

  // ---- where the data came from ----------------------------------------------------------------
  // Synthetic when any output of the run records synthetic_data: true (evaluate and train copy it
  // from the packed file, which `cxr prepare` marks when its CSV sits beside cxr synth's marker), or
  // when the run folder holds the demo's synthetic data (synth/cxr_synth.json). Real when an output
  // records synthetic_data: false and none says true. Unknown otherwise (outputs of older versions).
  enum class Origin { Synthetic, Real, Unknown };

  void detect_origin() {
    std::vector<std::pair<std::string, const json*>> sources = {
        {"eval/metrics.json", &metrics_}, {"the training configuration", &config_}, {"gradcam/gradcam.json", &gradcam_}};
    for (const auto& [rel, j] : variants_) sources.emplace_back(rel, &j);
    bool recorded_real = false;
    for (const auto& [what, j] : sources) {
      if (!j->is_object() || !j->contains("synthetic_data") || !(*j)["synthetic_data"].is_boolean()) continue;
      if ((*j)["synthetic_data"].get<bool>()) {
        origin_ = Origin::Synthetic, origin_evidence_ = what;
        return;
      }
      recorded_real = true;
    }
    const std::string marker = std::string("synth/") + io::kSynthMarker;
    if (fs::is_regular_file(at(marker))) {
      origin_ = Origin::Synthetic, origin_evidence_ = marker;
      return;
    }
    origin_ = recorded_real ? Origin::Real : Origin::Unknown;
  }
  bool synthetic() const { return origin_ == Origin::Synthetic; }
  std::string title_suffix() const { return synthetic() ? " &mdash; synthetic data" : ""; }

  std::string origin_banner() const {
    if (synthetic())
      return "<p class=\"synthetic\"><b>Synthetic data.</b> This run is on images drawn by <code>cxr "
             "synth</code> (procedurally drawn chest-like images, not patient data; recorded in " +
             html_escape(origin_evidence_) +
             "). Its figures show whether the software learns and localises what was drawn; they say nothing "
             "about radiographs, so no published figure is shown beside them.</p>\n";
    if (origin_ == Origin::Unknown && (metrics_.is_object() || gradcam_.is_object()))
      return "<p class=\"missing\">This run does not record whether its data were synthetic (outputs of a "
             "cxr that did not record it). Published figures below were measured on the NIH images; read "
             "them as such.</p>\n";
    return "";
  }
  // <table> of a results table; on synthetic data its caption says so.
  std::string open_table() const {
    return synthetic() ? "<table><caption class=\"synth-note\">synthetic data (cxr synth), not patient "
                         "images</caption>"
                       : "<table>";
  }

  std::string footer() const {
    std::ostringstream os;
    os << "<footer>Written by <code>cxr report</code>. Images from the NIH ChestX-ray14 dataset, where used, "
          "are provided by the NIH Clinical Center (https://nihcc.app.box.com/v/ChestXray-NIHCC; Wang et al., "
          "ChestX-ray8, CVPR 2017).";
    if (!synthetic()) {
      os << " Published AUCs: ";
      bool first = true;
      for (const auto& p : io::published_aucs()) {
        os << (first ? "" : "; ") << html_escape(std::string(p.name)) << ": " << html_escape(std::string(p.source));
        first = false;
      }
      os << ". Published localisation: " << html_escape(std::string(io::wang2017_iobb_found().source)) << ".";
    }
    os << "</footer>\n";
    return os.str();
  }

  // localisation/*/gradcam.json: one cxr gradcam run per method and layer (the demo writes them).
  void load_variants() {
    const fs::path dir = at("localisation");
    if (!fs::is_directory(dir)) return;
    std::vector<std::string> rels;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_directory() && fs::is_regular_file(e.path() / "gradcam.json"))
        rels.push_back("localisation/" + e.path().filename().string() + "/gradcam.json");
    std::sort(rels.begin(), rels.end());
    for (const std::string& rel : rels) {
      json j = read_json(rel);
      if (j.is_object()) variants_.emplace_back(rel, std::move(j));
    }
  }

  // A JSON file, or null (noting why) when absent or unreadable.
  json read_json(const std::string& rel) {
    const fs::path p = at(rel);
    if (!fs::exists(p)) return nullptr;
    try {
      return json::parse(io::read_text_file(p.string()));
    } catch (const std::exception& e) {
      note_missing(rel + " could not be read: " + std::string(e.what()).substr(0, 160));
      return nullptr;
    }
  }

  void load() {
    metrics_ = read_json("eval/metrics.json");
    gradcam_ = read_json("gradcam/gradcam.json");
    config_ = read_json("run/config.json");
    if (config_.is_null()) config_ = read_json("config.json");
    if (config_.is_null()) config_ = checkpoint_config();
    load_variants();
    const fs::path log = at("run/metrics.jsonl");
    if (fs::exists(log)) {
      have_log_ = true;
      for (const std::string& line : io::split_lines(io::read_text_file(log.string()))) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        try {
          json j = json::parse(line);
          const std::string type = j.value("type", "");
          if (type == "epoch")
            epochs_.push_back(j);
          else if (type == "config" && config_.is_null())
            config_ = j.contains("config") ? j["config"] : j;
        } catch (const std::exception&) {
          ++bad_log_lines_;
        }
      }
    }
  }

  // The flags a checkpoint of the run was trained with (io/checkpoint.h keeps them as JSON text in
  // /cxr/training_state/config_json), with the file's name; null when there is none.
  json checkpoint_config() {
    for (const char* rel : {"run/last.h5", "run/best.h5"}) {
      const fs::path p = at(rel);
      if (!fs::exists(p)) continue;
      try {
        io::h5::Silence quiet;
        auto f = io::h5::open_file(p.string());
        const std::string path = "/cxr/training_state/config_json";
        if (!io::h5::is_dataset(f, path)) continue;
        json j = json::parse(io::h5::read_string_dataset(f, path));
        if (!j.is_object()) continue;
        j["checkpoint"] = rel;
        return j;
      } catch (const std::exception&) {
        continue;  // another writer's file, or not ours: the section says the configuration is missing
      }
    }
    return nullptr;
  }

  // <img> of an image file inlined as a data: URI.
  std::string img_file(const fs::path& p, const std::string& alt, const std::string& cls) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    const std::string mime = ext == ".svg"                     ? "image/svg+xml"
                             : ext == ".jpg" || ext == ".jpeg" ? "image/jpeg"
                                                               : "image/png";
    return img_data(io::read_text_file(p.string()), mime, alt, cls);
  }
  std::string img_data(const std::string& bytes, const std::string& mime, const std::string& alt,
                       const std::string& cls) {
    ++info_->images;
    return "<img class=\"" + cls + "\" alt=\"" + html_escape(alt) + "\" src=\"data:" + mime + ";base64," +
           base64_encode(bytes) + "\">";
  }
  // A chart stored as <stem>.svg (preferred) or <stem>.png; "" when neither exists.
  std::string chart(const std::string& stem, const std::string& alt) {
    for (const char* ext : {".svg", ".png"}) {
      const fs::path p = at(stem + ext);
      if (fs::exists(p) && fs::file_size(p) > 0) return "<p>" + img_file(p, alt, "chart") + "</p>\n";
    }
    return "";
  }

  std::string config_section() {
    std::ostringstream os;
    os << "<h2 id=\"config\">Configuration</h2>\n";
    auto kv_table = [&](const std::string& title, const json& j, const std::vector<std::string>& keys) {
      std::ostringstream t;
      int rows = 0;
      t << "<h3>" << html_escape(title) << "</h3>\n<table class=\"kv\">";
      for (const auto& [k, v] : j.items()) {
        if (!keys.empty() && std::find(keys.begin(), keys.end(), k) == keys.end()) continue;
        if (v.is_object() || v.is_array()) continue;
        t << "<tr><td>" << html_escape(k) << "</td><td>" << html_escape(scalar_text(v)) << "</td></tr>";
        ++rows;
      }
      t << "</table>\n";
      return rows > 0 ? t.str() : std::string();
    };
    if (config_.is_object()) {
      os << kv_table("Training", config_, {});
    } else {
      os << missing_box(
          "No training configuration (looked for run/config.json, a {\"type\": \"config\"} line in "
          "run/metrics.jsonl and the training state of run/last.h5 or run/best.h5).");
      note_missing("training configuration (run/config.json)");
    }
    if (metrics_.is_object())
      os << kv_table(
          "Evaluation", metrics_,
          {"weights", "data", "split", "images", "image_size", "normalization", "thresholds_from"});
    if (gradcam_.is_object())
      os << kv_table(
          "Grad-CAM", gradcam_,
          {"weights", "images", "image_size", "method", "layer", "gradient", "colormap", "device", "boxes",
           "threshold", "cam_threshold"});
    return os.str();
  }

  std::string classes_section() {
    std::string c = chart("stats/class_balance", "class frequencies");
    if (c.empty()) {
      note_missing("class-frequency chart (stats/class_balance.svg or .png)");
      c = missing_box("No class-frequency chart (stats/class_balance.svg or .png; cxr stats writes it).");
    }
    return "<h2 id=\"classes\">Class frequencies</h2>\n" + c;
  }

  std::string training_section() {
    std::ostringstream os;
    os << "<h2 id=\"training\">Training curves</h2>\n";
    std::string c = chart("run/training_curves", "training curves");
    if (c.empty() && !epochs_.empty()) {  // draw them from the log
      std::vector<io::EpochPoint> pts;
      for (const json& e : epochs_) {
        io::EpochPoint p;
        p.epoch = e.value("epoch", double(pts.size() + 1));
        if (e.contains("train_loss") && e["train_loss"].is_number()) p.train_loss = e["train_loss"];
        if (e.contains("val_loss") && e["val_loss"].is_number()) p.val_loss = e["val_loss"];
        if (e.contains("val_mean_auc") && e["val_mean_auc"].is_number()) p.val_auc = e["val_mean_auc"];
        pts.push_back(p);
      }
      c = "<p>" +
          img_data(io::figure_svg(io::training_figure(pts, "Training curves (drawn from run/metrics.jsonl)")),
                   "image/svg+xml", "training curves", "chart") +
          "</p>\n";
    }
    if (c.empty()) {
      note_missing("training curves (run/training_curves.svg or .png, run/metrics.jsonl)");
      os << missing_box("No training curves (run/training_curves.svg or .png) and no run/metrics.jsonl.");
    }
    os << c;
    if (!epochs_.empty()) {
      os << open_table() << "<tr><th>epoch</th><th>train loss</th><th>val loss</th><th>val mean AUC</th><th>learning "
            "rate</th></tr>";
      for (const json& e : epochs_)
        os << "<tr><td>" << html_escape(scalar_text(e.value("epoch", json(nullptr)))) << "</td><td>"
           << fmt(e.value("train_loss", json(nullptr)), 4) << "</td><td>"
           << fmt(e.value("val_loss", json(nullptr)), 4) << "</td><td>"
           << fmt(e.value("val_mean_auc", json(nullptr)), 4) << "</td><td>"
           << (e.contains("lr") && e["lr"].is_number() ? html_escape(scalar_text(e["lr"])) : "&ndash;")
           << "</td></tr>";
      os << "</table>\n";
    } else if (have_log_) {
      os << missing_box("run/metrics.jsonl has no epoch lines.");
    }
    if (bad_log_lines_ > 0)
      os << missing_box(std::to_string(bad_log_lines_) +
                        " line(s) of run/metrics.jsonl are not JSON and were skipped.");
    return os.str();
  }

  std::string roc_section() {
    std::string c = chart("eval/roc_curves", "ROC curves");
    if (c.empty()) {
      note_missing("ROC curves (eval/roc_curves.svg or .png)");
      c = missing_box("No ROC curves (eval/roc_curves.svg or .png; cxr evaluate --out writes them).");
    }
    return "<h2 id=\"roc\">ROC curves</h2>\n" + c;
  }

  // The AUC table: ours (and the bootstrap interval); the published columns for data not known to be
  // synthetic; "ours - CheXNet" only for data recorded as real.
  std::string auc_section() {
    std::ostringstream os;
    os << "<h2 id=\"auc\">" << (synthetic() ? "AUC" : "AUC beside the published") << "</h2>\n";
    if (!metrics_.is_object() || !metrics_.contains("auc")) {
      note_missing("evaluation metrics (eval/metrics.json)");
      os << missing_box("No eval/metrics.json with per-class AUCs (cxr evaluate --out writes it).");
      return os.str();
    }
    const json ci = metrics_.value("auc_ci95", json::object());
    os << open_table() << "<tr><th>class</th><th>ours</th>" << (ci.empty() ? "" : "<th>95% CI</th>");
    if (!synthetic())
      for (const auto& p : io::published_aucs()) os << "<th>" << html_escape(std::string(p.name)) << "</th>";
    if (origin_ == Origin::Real) os << "<th>ours &minus; CheXNet</th>";
    os << "</tr>";
    for (int k = 0; k < io::kNumClasses; ++k) os << auc_row(k, ci);
    os << auc_mean_row(ci) << "</table>\n" << auc_note();
    return os.str();
  }

  static std::string interval(const json& v) {
    return v.is_array() && v.size() == 2 ? fmt(v[0]) + "&ndash;" + fmt(v[1]) : "&ndash;";
  }
  static std::string difference(double d, bool coloured) {
    const std::string cls = !coloured || !std::isfinite(d) ? "" : d >= 0 ? " class=\"good\"" : " class=\"bad\"";
    return "<td" + cls + ">" + (std::isfinite(d) && d >= 0 ? "+" : "") + fmt(d) + "</td>";
  }

  std::string auc_row(int k, const json& ci) const {
    const size_t chexnet = 1;  // column order of FACTS.md: Wang, CheXNet, arnoweng, Coursera
    const auto& pub = io::published_aucs();
    const std::string name(io::kClassNames[size_t(k)]);
    const json& auc = metrics_["auc"];
    const double ours = auc.contains(name) && auc[name].is_number() ? auc[name].get<double>() : NAN;
    std::ostringstream os;
    os << "<tr><td>" << html_escape(name) << "</td><td>" << fmt(ours) << "</td>";
    if (!ci.empty()) os << "<td>" << interval(ci.value(name, json(nullptr))) << "</td>";
    if (!synthetic())
      for (const auto& p : pub) os << "<td>" << fmt(p.auc[size_t(k)], p.decimals) << "</td>";
    if (origin_ == Origin::Real) os << difference(ours - pub[chexnet].auc[size_t(k)], true);
    os << "</tr>";
    return os.str();
  }

  std::string auc_mean_row(const json& ci) const {
    const auto& pub = io::published_aucs();
    const double mean =
        metrics_.value("mean_auc", json(nullptr)).is_number() ? metrics_["mean_auc"].get<double>() : NAN;
    std::ostringstream os;
    os << "<tr class=\"mean\"><td>mean</td><td>" << fmt(mean) << "</td>";
    if (!ci.empty()) os << "<td>" << interval(metrics_.value("mean_auc_ci95", json(nullptr))) << "</td>";
    if (!synthetic())
      for (const auto& p : pub) os << "<td>" << fmt(p.mean, 3) << "</td>";
    if (origin_ == Origin::Real) os << difference(mean - pub[1].mean, false);
    os << "</tr>";
    return os.str();
  }

  std::string auc_note() const {
    std::ostringstream os;
    os << "<p class=\"sub\">" << html_escape(scalar_text(metrics_.value("split", json("test")))) << " set, "
       << html_escape(scalar_text(metrics_.value("images", json("?"))));
    if (synthetic())
      return os.str() +
             " synthetic images. Published AUCs were measured on the NIH radiographs and are not shown: a "
             "synthetic AUC is no evidence about real images.</p>\n";
    os << " images. Published figures are on the official NIH data with other splits and resolutions: a "
          "comparison of magnitude, not a paired test. Their splits: ";
    bool first = true;
    for (const auto& p : io::published_aucs()) {
      os << (first ? "" : "; ") << html_escape(std::string(p.name)) << ", "
         << (p.split.empty() ? "not recorded here (see its source in the footer)"
                             : html_escape(std::string(p.split)));
      first = false;
    }
    os << ".</p>\n";
    return os.str();
  }

  std::string thresholds_section() {
    std::ostringstream os;
    os << "<h2 id=\"thresholds\">Threshold metrics</h2>\n";
    if (!metrics_.is_object() || !metrics_.contains("thresholds") || !metrics_["thresholds"].is_object()) {
      note_missing("threshold metrics (thresholds in eval/metrics.json)");
      os << missing_box(
          "No thresholds in eval/metrics.json (cxr evaluate chooses them on a validation set).");
      return os.str();
    }
    for (const auto& [rule, per] : metrics_["thresholds"].items()) {
      os << "<h3>"
         << html_escape(rule == "youden" ? "Youden's J (sensitivity + specificity - 1)"
                        : rule == "f1"   ? "Best F1"
                                         : rule)
         << ", chosen on " << html_escape(scalar_text(metrics_.value("thresholds_from", json("val"))))
         << "</h3>\n" << open_table() << "<tr><th>class</th><th>threshold</th><th>sensitivity</th><th>specificity</"
            "th><th>PPV</th>"
            "<th>NPV</th><th>F1</th><th>TP</th><th>FP</th><th>TN</th><th>FN</th></tr>";
      for (const auto& [name, m] : per.items()) {
        os << "<tr><td>" << html_escape(name) << "</td>";
        for (const char* key : {"threshold", "sensitivity", "specificity", "ppv", "npv", "f1"})
          os << "<td>" << fmt(m.value(key, json(nullptr))) << "</td>";
        for (const char* key : {"tp", "fp", "tn", "fn"})
          os << "<td>" << (m.contains(key) ? html_escape(scalar_text(m[key])) : "&ndash;") << "</td>";
        os << "</tr>";
      }
      os << "</table>\n";
    }
    return os.str();
  }

  std::string pointing_table() {
    std::ostringstream os;
    const json counts = gradcam_.value("pointing_game_counts", json::object());
    os << "<h3>Pointing game</h3>\n<p>A hit when the map's maximum lies inside a box of the class (per image "
          "and "
          "class with boxes); true positives: probability &ge; "
       << fmt(gradcam_.value("threshold", json(0.5)), 2)
       << ".</p>\n" << open_table() << "<tr><th>class</th><th>pairs</th><th>hits</th>"
       << "<th>hit rate</th><th>TP pairs</th><th>TP hit rate</th></tr>";
    for (const auto& [name, c] : counts.items())
      os << "<tr><td>" << html_escape(name) << "</td><td>" << c.value("pairs", 0) << "</td><td>"
         << c.value("hits", 0) << "</td><td>"
         << fmt(gradcam_["pointing_game_per_class"].value(name, json(nullptr))) << "</td><td>"
         << c.value("tp_pairs", 0) << "</td><td>"
         << fmt(gradcam_.value("pointing_game_true_positive_per_class", json::object())
                    .value(name, json(nullptr)))
         << "</td></tr>";
    os << "<tr class=\"mean\"><td>overall</td><td>"
       << scalar_text(gradcam_.value("pointing_game_pairs", json(0))) << "</td><td></td><td>"
       << fmt(gradcam_["pointing_game"]) << "</td><td></td><td>"
       << fmt(gradcam_.value("pointing_game_true_positive", json(nullptr))) << "</td></tr></table>\n";
    return os.str();
  }

  // "Grad-CAM maps from the final block's feature map", from a gradcam.json's method and layer.
  static std::string map_description(const json& g) {
    const std::string method = g.is_object() ? g.value("method", "gradcam") : "gradcam";
    const std::string layer = g.is_object() ? g.value("layer", "final") : "final";
    const std::string name = method == "gradcam"     ? "Grad-CAM"
                             : method == "gradcam++" ? "Grad-CAM++"
                             : method == "hirescam"  ? "HiResCAM"
                             : method == "layercam"  ? "LayerCAM"
                                                     : method;
    const std::string where = layer == "final"    ? "the final 1024-channel feature map"
                              : layer == "block3" ? "the output of dense block 3"
                              : layer == "block2" ? "the output of dense block 2"
                              : layer == "fuse"   ? "several layers, fused"
                                                  : "layer " + layer;
    return name + " maps from " + where;
  }

  // j[key] when j is an object holding an object there, else an empty object (partial files read).
  static json member(const json& j, const char* key) {
    return j.is_object() && j.contains(key) && j[key].is_object() ? j[key] : json::object();
  }

  static std::string found_cells(const json& s, const char* key) {
    std::string out;
    const json found = member(s, key);
    for (double t : {0.1, 0.25, 0.5, 0.75, 0.9}) {
      char k[16];
      std::snprintf(k, sizeof k, "%g", t);
      out += "<td>" + fmt(found.value(k, json(nullptr))) + "</td>";
    }
    return out;
  }

  // Wang et al. 2017 Table 4 beside ours (real data only): T = 0.1, 0.25, 0.5; a dash at 0.75 and 0.9
  // (not in the table) and for classes without boxes there.
  static std::string wang_cells(const std::string& cls) {
    const int k = io::class_index(cls);
    std::string out;
    for (int t = 0; t < 5; ++t) {
      const double v = k >= 0 && t < 3 ? io::wang2017_iobb_found().found[size_t(k)][size_t(t)] : NAN;
      out += "<td>" + fmt(v) + "</td>";
    }
    return out;
  }

  std::string localisation_row(const std::string& name, const json& split, bool overall) const {
    const json all = member(split, "all"), tp = member(split, "true_positive");
    std::ostringstream os;
    os << "<tr" << (overall ? " class=\"mean\"" : "") << "><td>" << html_escape(name) << "</td><td>"
       << scalar_text(all.value("pairs", json(0))) << "</td><td>" << fmt(all.value("pointing_game", json(nullptr)))
       << "</td><td>" << fmt(all.value("energy_pointing_game", json(nullptr))) << "</td>"
       << found_cells(all, "iobb_found") << "<td>" << fmt(all.value("iou_mean", json(nullptr))) << "</td><td>"
       << scalar_text(tp.value("pairs", json(0))) << "</td><td>" << fmt(tp.value("pointing_game", json(nullptr)))
       << "</td>";
    if (!synthetic()) os << wang_cells(overall ? "" : name);
    os << "</tr>";
    return os.str();
  }

  // The "localisation" object of a gradcam.json (tools/cam_scores.h, LocalisationTally).
  std::string localisation_table(const json& loc) const {
    std::ostringstream os;
    os << "<h3>Localisation</h3>\n<p>Per (image, class) with boxes. Pointing game (PG): the map's maximum "
          "inside a box of the class. Energy PG: the share of the map's mass inside the boxes. IoBB: the box "
          "of the map thresholded at "
       << fmt(loc.value("cam_threshold", json(nullptr)), 2)
       << " of its maximum (largest connected region) against the class's boxes, area(box &cap; map box) / "
          "area(map box); found: IoBB &ge; T. True positives (TP): probability &ge; "
       << fmt(loc.value("threshold", json(nullptr)), 2) << ".";
    if (!synthetic()) os << " Wang 2017: ChestX-ray8 Table 4 on the NIH boxes (no values at 0.75 and 0.9).";
    os << "</p>\n"
       << open_table() << "<tr><th>class</th><th>pairs</th><th>PG</th><th>energy PG</th>"
       << "<th>IoBB&ge;0.1</th><th>&ge;0.25</th><th>&ge;0.5</th><th>&ge;0.75</th><th>&ge;0.9</th>"
       << "<th>IoU mean</th><th>TP pairs</th><th>TP PG</th>";
    if (!synthetic())
      os << "<th>Wang 2017 &ge;0.1</th><th>&ge;0.25</th><th>&ge;0.5</th><th>&ge;0.75</th><th>&ge;0.9</th>";
    os << "</tr>";
    const json per_class = member(loc, "per_class");
    for (const auto& [name, split] : per_class.items())
      os << localisation_row(name, split, false);
    os << localisation_row("overall", member(loc, "overall"), true) << "</table>\n";
    return os.str();
  }

  // Every localisation/*/gradcam.json side by side (overall scores).
  std::string variants_table() const {
    if (variants_.empty()) return "";
    std::ostringstream os;
    os << "<h3>Methods and layers side by side</h3>\n<p>Overall scores of each run in localisation/ "
          "(all pairs unless marked TP).</p>\n"
       << open_table()
       << "<tr><th>run</th><th>method</th><th>layer</th><th>pairs</th><th>PG</th><th>TP pairs</th>"
          "<th>TP PG</th><th>energy PG</th><th>IoBB&ge;0.5</th></tr>";
    for (const auto& [rel, j] : variants_) {
      const json loc = member(j, "localisation"), ov = member(loc, "overall");
      const json all = member(ov, "all"), tp = member(ov, "true_positive");
      os << "<tr><td>" << html_escape(fs::path(rel).parent_path().filename().string()) << "</td><td>"
         << html_escape(scalar_text(j.value("method", json("?")))) << "</td><td>"
         << html_escape(scalar_text(j.value("layer", json("?")))) << "</td><td>"
         << scalar_text(all.value("pairs", json(0))) << "</td><td>" << fmt(all.value("pointing_game", json(nullptr)))
         << "</td><td>" << scalar_text(tp.value("pairs", json(0))) << "</td><td>"
         << fmt(tp.value("pointing_game", json(nullptr))) << "</td><td>"
         << fmt(all.value("energy_pointing_game", json(nullptr))) << "</td><td>"
         << fmt(member(all, "iobb_found").value("0.5", json(nullptr))) << "</td></tr>";
    }
    os << "</table>\n";
    return os.str();
  }

  // The localisation table (or, for a gradcam.json without it, the pointing-game table), then every
  // method and layer side by side.
  std::string score_tables() {
    std::string out;
    if (gradcam_.is_object() && gradcam_.contains("localisation") && gradcam_["localisation"].is_object())
      out = localisation_table(gradcam_["localisation"]);
    else if (gradcam_.is_object() && gradcam_.contains("pointing_game"))
      out = pointing_table();
    return out + variants_table();
  }

  std::string gradcam_section() {
    std::ostringstream os;
    os << "<h2 id=\"gradcam\">Grad-CAM</h2>\n";
    const fs::path dir = at("gradcam");
    struct Item {
      fs::path file;
      std::string caption;
      int hit = -1;  // -1: no boxes
    };
    std::vector<Item> items;
    if (gradcam_.is_object() && gradcam_.contains("maps")) {
      for (const json& m : gradcam_["maps"]) {
        Item it;
        it.file = dir / m.value("file", "");
        char p[32];
        std::snprintf(p, sizeof p, "p=%.3f", m.value("probability", 0.0));
        it.caption =
            fs::path(m.value("image", "")).filename().string() + " · " + m.value("class", "") + " · " + p;
        if (m.contains("hit")) it.hit = m["hit"].get<bool>() ? 1 : 0;
        items.push_back(it);
      }
    } else if (fs::is_directory(dir)) {
      std::vector<fs::path> pngs;
      for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".png") pngs.push_back(e.path());
      std::sort(pngs.begin(), pngs.end());
      for (const auto& p : pngs) items.push_back(Item{p, p.filename().string(), -1});
    }
    if (items.empty()) {
      note_missing("Grad-CAM overlays (gradcam/*.png, gradcam/gradcam.json)");
      os << missing_box("No Grad-CAM overlays (cxr gradcam --out RUN_DIR/gradcam writes them).");
      return os.str() + score_tables();
    }
    os << "<p>Class-specific " << html_escape(map_description(gradcam_))
       << " (gradient of the logit), colour map Turbo over the grey image; white boxes: the class's annotated "
          "boxes; white cross: the map's maximum.</p>\n"
       << score_tables() << "<div class=\"gallery\">\n";
    int64_t shown = 0, absent = 0;
    for (const Item& it : items) {
      if (shown >= opt_.max_gallery) break;
      if (!fs::exists(it.file)) {
        ++absent;
        continue;
      }
      os << "<figure>" << img_file(it.file, it.caption, "overlay") << "<figcaption>"
         << html_escape(it.caption);
      if (it.hit >= 0)  // no green on synthetic data: a hit there is no clinical success
        os << " · <span class=\"" << (synthetic() ? "mark" : it.hit ? "hit" : "miss") << "\">"
           << (it.hit ? "hit" : "miss") << "</span>";
      os << "</figcaption></figure>\n";
      ++shown;
    }
    os << "</div>\n";
    const int64_t rest = int64_t(items.size()) - shown - absent;
    if (rest > 0) os << "<p class=\"sub\">" << rest << " more overlays in gradcam/ are not shown.</p>\n";
    if (absent > 0) {
      os << missing_box(std::to_string(absent) + " overlay file(s) listed in gradcam.json are missing.");
      note_missing(std::to_string(absent) + " Grad-CAM overlay file(s) named in gradcam/gradcam.json");
    }
    return os.str();
  }

  const ReportOptions& opt_;
  ReportResult* info_;
  fs::path dir_;
  json metrics_, gradcam_, config_;
  std::vector<std::pair<std::string, json>> variants_;  // localisation/*/gradcam.json, by path
  Origin origin_ = Origin::Unknown;
  std::string origin_evidence_;  // the file that says the data are synthetic
  std::vector<json> epochs_;
  bool have_log_ = false;
  int64_t bad_log_lines_ = 0;
};

}  // namespace

std::string report_html(const ReportOptions& opt, ReportResult* info) {
  ReportResult local;
  if (!info) info = &local;
  *info = ReportResult{};
  Page page(opt, info);
  std::string html = page.build();
  info->bytes = int64_t(html.size());
  return html;
}

ReportResult write_report(const ReportOptions& opt) {
  ReportResult info;
  const std::string html = report_html(opt, &info);
  info.path = opt.out.empty() ? (fs::path(opt.run_dir) / "report.html").string() : opt.out;
  io::write_text_file(info.path, html);
  return info;
}

}  // namespace cxr::app
