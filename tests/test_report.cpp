// cxr report: the page's content from a complete and an empty run folder, and the page loaded in
// headless Chromium (Debian's `chromium`; skipped with a message where it is not installed), which
// must render with no console error and no broken image.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "io/classes.h"
#include "io/fileutil.h"
#include "io/image.h"
#include "io/plot.h"
#include "test_data_util.h"
#include "test_util.h"
#include "io/packed.h"
#include "io/synth.h"
#include "tools/cam_scores.h"
#include "tools/report.h"

namespace cxr::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A small grey+colour PNG (w x h RGB).
void write_test_png(const std::string& path, int w, int h, uint8_t tint) {
  std::vector<uint8_t> px(size_t(w * h * 3));
  for (int i = 0; i < w * h; ++i)
    px[size_t(i * 3)] = uint8_t(i % 251), px[size_t(i * 3 + 1)] = tint, px[size_t(i * 3 + 2)] = 90;
  io::write_png(path, px.data(), w, h, 3);
}

// Where a stand-in run's data came from, as evaluate records it (eval/metrics.json synthetic_data).
enum class Data { Real, Synthetic, Unrecorded };

// A run folder with every part the report reads, made from small stand-ins.
void make_run_folder(const std::string& root, Data data = Data::Real) {
  for (const char* d : {"stats", "run", "eval", "gradcam"}) fs::create_directories(fs::path(root) / d);
  io::Figure bars;
  io::LineChart c;
  c.title = "class frequencies";
  io::Series s;
  for (int k = 0; k < io::kNumClasses; ++k) s.x.push_back(k), s.y.push_back(0.01 * (k + 1));
  c.series.push_back(s);
  bars.panels.push_back(c);
  io::write_svg(bars, root + "/stats/class_balance.svg");

  std::string log = R"({"type":"config","config":{"epochs":2,"batch":16,"lr":0.001,"normalize":"sample"}})"
                    "\n";
  std::vector<io::EpochPoint> pts;
  for (int e = 1; e <= 2; ++e) {
    json j = {{"type", "epoch"},
              {"epoch", e},
              {"train_loss", 0.9 / e},
              {"val_loss", 1.0 / e},
              {"val_mean_auc", 0.6 + 0.05 * e},
              {"lr", 1e-3},
              {"val_auc", {{"Mass", 0.7}}}};
    log += json({{"type", "step"}, {"step", e * 10}, {"loss", 0.5}}).dump() + "\n" + j.dump() + "\n";
    io::EpochPoint p;
    p.epoch = e, p.train_loss = 0.9 / e, p.val_loss = 1.0 / e, p.val_auc = 0.6 + 0.05 * e;
    pts.push_back(p);
  }
  write_file(root + "/run/metrics.jsonl", log);
  io::write_svg(io::training_figure(pts), root + "/run/training_curves.svg");

  json m = {{"weights", "run/best.h5"},  {"split", "test"},          {"images", 200},   {"image_size", 64},
            {"normalization", "sample"}, {"thresholds_from", "val"}, {"mean_auc", 0.71}};
  json auc = json::object(), ci = json::object(), youden = json::object();
  for (int k = 0; k < io::kNumClasses - 1; ++k) {  // Hernia without both labels: omitted, as evaluate does
    const std::string name(io::kClassNames[size_t(k)]);
    auc[name] = 0.6 + 0.02 * k;
    ci[name] = {0.55 + 0.02 * k, 0.65 + 0.02 * k};
    youden[name] = {{"threshold", 0.4}, {"sensitivity", 0.7}, {"specificity", 0.65},
                    {"ppv", 0.2},       {"npv", 0.95},        {"f1", 0.31},
                    {"tp", 7},          {"fp", 28},           {"tn", 160},
                    {"fn", 5}};
  }
  m["auc"] = auc;
  m["auc_ci95"] = ci;
  m["thresholds"] = {{"youden", youden}, {"f1", youden}};
  if (data != Data::Unrecorded) m["synthetic_data"] = data == Data::Synthetic;
  write_file(root + "/eval/metrics.json", m.dump(2));
  write_test_png(root + "/eval/roc_curves.png", 120, 90, 30);

  json g = {
      {"images", 2},
      {"image_size", 64},
      {"gradient", "logit"},
      {"colormap", "turbo"},
      {"pointing_game", 0.5},
      {"pointing_game_true_positive", 1.0},
      {"pointing_game_pairs", 2},
      {"threshold", 0.5},
      {"pointing_game_per_class", {{"Mass", 0.5}}},
      {"pointing_game_true_positive_per_class", {{"Mass", 1.0}}},
      {"pointing_game_counts", {{"Mass", {{"pairs", 2}, {"hits", 1}, {"tp_pairs", 1}, {"tp_hits", 1}}}}}};
  g["maps"] = json::array();
  for (int i = 0; i < 2; ++i) {
    const std::string f = "img" + std::to_string(i) + "_Mass_p0.6" + std::to_string(i) + "0.png";
    write_test_png(root + "/gradcam/" + f, 64, 64, uint8_t(100 + 50 * i));
    g["maps"].push_back({{"image", "images/img" + std::to_string(i) + ".png"},
                         {"class", "Mass"},
                         {"probability", 0.6 + 0.01 * i},
                         {"file", f},
                         {"hit", i == 0}});
  }
  write_file(root + "/gradcam/gradcam.json", g.dump(2));
}

TEST(Report, Base64AndEscape) {
  EXPECT_EQ(app::base64_encode(""), "");
  EXPECT_EQ(app::base64_encode("f"), "Zg==");
  EXPECT_EQ(app::base64_encode("fo"), "Zm8=");
  EXPECT_EQ(app::base64_encode("foo"), "Zm9v");
  EXPECT_EQ(app::base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(app::base64_encode(std::string("\xff\x00\x10", 3)), "/wAQ");
  EXPECT_EQ(app::html_escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
}

TEST(Report, CompleteRunFolder) {
  ScratchDir dir("report_full");
  make_run_folder(dir.path());
  app::ReportOptions opt;
  opt.run_dir = dir.path();
  const auto r = app::write_report(opt);
  EXPECT_EQ(r.path, dir / "report.html");
  EXPECT_TRUE(r.missing.empty()) << r.missing.front();
  EXPECT_EQ(r.images, 5);  // class balance, training curves, ROC, two overlays
  const std::string html = io::read_text_file(r.path);
  for (const char* want :
       {"Configuration", "Class frequencies", "Training curves", "ROC curves", "AUC beside the published",
        "Threshold metrics", "Grad-CAM", "Pointing game", "data:image/svg+xml;base64,",
        "data:image/png;base64,", ">Wang 2017<", "0.8094", "Youden", "Pleural_Thickening", "img1.png",
        "p=0.610", "class=\"hit\">hit", "class=\"miss\">miss", ">batch<"})
    EXPECT_NE(html.find(want), std::string::npos) << want;
  // Self-contained: no reference to anything outside the file, no script in a normal report.
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("src=\"file:"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(std::count(html.begin(), html.end(), '\0'), 0);
  const std::regex img("<img ");
  EXPECT_EQ(std::distance(std::sregex_iterator(html.begin(), html.end(), img), std::sregex_iterator()),
            r.images);
}

TEST(Report, MissingPartsAreStatedNotFatal) {
  ScratchDir dir("report_empty");
  app::ReportOptions opt;
  opt.run_dir = dir.path();
  const auto r = app::write_report(opt);
  EXPECT_EQ(r.images, 0);
  EXPECT_GE(r.missing.size(), 6u);
  const std::string html = io::read_text_file(r.path);
  EXPECT_NE(html.find("Not in this run"), std::string::npos);
  EXPECT_NE(html.find("No ROC curves"), std::string::npos);
  EXPECT_NE(html.find("No Grad-CAM overlays"), std::string::npos);

  // The training curves are drawn from the log when the chart file is missing; a broken JSON line
  // is reported, not fatal.
  fs::create_directories(dir / "run");
  write_file(dir / "run/metrics.jsonl",
             R"({"type":"epoch","epoch":1,"train_loss":0.5,"val_loss":0.6,"val_mean_auc":0.7,"lr":0.001})"
             "\nnot json\n");
  const auto r2 = app::write_report(opt);
  EXPECT_EQ(r2.images, 1);
  EXPECT_NE(io::read_text_file(r2.path).find("1 line(s) of run/metrics.jsonl are not JSON"),
            std::string::npos);
}

TEST(Report, CliWritesReport) {
  ScratchDir dir("report_cli");
  make_run_folder(dir.path());
  const RunResult ok = run_cxr(dir, "report " + dir.path() + " --out " + dir / "r.html");
  ASSERT_EQ(ok.status, 0) << ok.out << ok.err;
  EXPECT_TRUE(fs::exists(dir / "r.html"));
  const RunResult bad = run_cxr(dir, "report " + dir / "no_such_dir");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("no_such_dir"), std::string::npos) << bad.err;
}

// ---- where the data came from: synthetic runs say so and show no published figure ----------------

app::PairScore pair_score(bool hit, double energy, double iou, double iobb) {
  app::PairScore s;
  s.hit = hit, s.energy = energy, s.iou = iou, s.iobb = iobb, s.has_box = true;
  return s;
}

// The "localisation" object of gradcam.json (tools/cam_scores.h): Mass (IoBB 0.6 TP, 0.3 not TP) and
// Cardiomegaly (IoBB 0.95, TP). Overall: 3 pairs, 2 hits, energy (0.5 + 0.25 + 0.75) / 3 = 0.5,
// found at 0.5 by 2 of 3; TP: 2 pairs, both hits.
json localisation_object() {
  app::LocalisationTally t(0.5, 0.15);
  t.add("Mass", pair_score(true, 0.5, 0.4, 0.6), true);
  t.add("Mass", pair_score(false, 0.25, 0.1, 0.3), false);
  t.add("Cardiomegaly", pair_score(true, 0.75, 0.5, 0.95), true);
  return t.to_json();
}

// Adds the localisation object to gradcam/gradcam.json, and one run per method/layer in localisation/.
void add_localisation(const std::string& root) {
  json g = json::parse(io::read_text_file(root + "/gradcam/gradcam.json"));
  g["localisation"] = localisation_object();
  write_file(root + "/gradcam/gradcam.json", g.dump(2));
  fs::create_directories(root + "/localisation/gradcampp_block3");
  write_file(root + "/localisation/gradcampp_block3/gradcam.json",
             json({{"method", "gradcam++"}, {"layer", "block3"}, {"localisation", localisation_object()}}).dump());
}

std::string report_of(const std::string& root) {
  app::ReportOptions opt;
  opt.run_dir = root;
  return io::read_text_file(app::write_report(opt).path);
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// Our Cardiomegaly row: 1 pair, PG 1, energy 0.75, found at every T (IoBB 0.95), IoU 0.5, 1 TP pair, TP PG 1.
const char* kCardioRow =
    "<tr><td>Cardiomegaly</td><td>1</td><td>1.000</td><td>0.750</td><td>1.000</td><td>1.000</td><td>1.000</td>"
    "<td>1.000</td><td>1.000</td><td>0.500</td><td>1</td><td>1.000</td>";
// The side-by-side row: 3 pairs, PG 2/3, 2 TP pairs, TP PG 1, energy 0.5, found at 0.5 by 2 of 3.
const char* kVariantRow =
    "<tr><td>gradcampp_block3</td><td>gradcam++</td><td>block3</td><td>3</td><td>0.667</td><td>2</td>"
    "<td>1.000</td><td>0.500</td><td>0.667</td></tr>";

TEST(Report, SyntheticRunSaysSoBesideEveryTableAndShowsNoPublishedFigure) {
  ScratchDir dir("report_synthetic");
  make_run_folder(dir.path(), Data::Synthetic);
  add_localisation(dir.path());
  const std::string html = report_of(dir.path());
  EXPECT_NE(html.find("synthetic data</title>"), std::string::npos);
  EXPECT_NE(html.find("synthetic data</h1>"), std::string::npos);
  EXPECT_NE(html.find("recorded in eval/metrics.json"), std::string::npos);
  // Every results table (epochs, AUC, two threshold rules, localisation, methods side by side) carries
  // the caption; the configuration's key-value tables are <table class="kv">.
  EXPECT_EQ(count(html, "<table>"), 6u);
  EXPECT_EQ(count(html, "<table><caption class=\"synth-note\">synthetic data"), 6u);
  for (const char* absent : {"CheXNet", "Wang 2017", "arnoweng", "Coursera", "&minus;", "0.8094", "0.877",
                             "class=\"good\"", "class=\"hit\"", "class=\"bad\"", "Published AUCs:"})
    EXPECT_EQ(html.find(absent), std::string::npos) << absent;
  EXPECT_NE(html.find(std::string(kCardioRow) + "</tr>"), std::string::npos) << "no Wang columns after ours";
  EXPECT_NE(html.find(kVariantRow), std::string::npos);
  EXPECT_NE(html.find("class=\"mark\">hit"), std::string::npos);
}

TEST(Report, RealRunShowsPublishedColumnsWithTheirSplitsAndWangTable4) {
  ScratchDir dir("report_real");
  make_run_folder(dir.path(), Data::Real);
  add_localisation(dir.path());
  const std::string html = report_of(dir.path());
  EXPECT_EQ(html.find("synthetic data</"), std::string::npos);
  EXPECT_EQ(html.find("class=\"synth-note\""), std::string::npos);
  for (const char* want : {">Wang 2017<", "ours &minus; CheXNet", "0.8094",
                           "CheXNet 2017, random 70/10/20 patient-wise split (the splits-chexnet lists)",
                           "Wang 2017, not recorded here", "Localisation", "arXiv:1705.02315 v5, Table 4"})
    EXPECT_NE(html.find(want), std::string::npos) << want;
  // Wang et al. Table 4 beside ours: Cardiomegaly .993/.979/.877, no values at 0.75 and 0.9.
  EXPECT_NE(html.find(std::string(kCardioRow) +
                      "<td>0.993</td><td>0.979</td><td>0.877</td><td>&ndash;</td><td>&ndash;</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find(kVariantRow), std::string::npos);
}

TEST(Report, UnrecordedOriginShowsPublishedColumnsWithoutTheDifference) {
  ScratchDir dir("report_unrecorded");
  make_run_folder(dir.path(), Data::Unrecorded);
  std::string html = report_of(dir.path());
  EXPECT_NE(html.find(">Wang 2017<"), std::string::npos);
  EXPECT_EQ(html.find("ours &minus; CheXNet"), std::string::npos);
  EXPECT_NE(html.find("does not record whether its data were synthetic"), std::string::npos);
  EXPECT_NE(html.find("Pointing game"), std::string::npos) << "the table of a gradcam.json without localisation";
  // The demo's layout: the synthetic data folder inside the run folder says it.
  fs::create_directories(dir / "synth");
  write_file(dir / "synth/cxr_synth.json", "{}");
  html = report_of(dir.path());
  EXPECT_NE(html.find("recorded in synth/cxr_synth.json"), std::string::npos);
  EXPECT_EQ(html.find("Wang 2017"), std::string::npos);
}

// End to end: cxr synth writes its marker, prepare records it in the packed file, evaluate copies it
// into metrics.json, and the report says synthetic; the same data without the marker read as real.
TEST(Report, SyntheticDataIsTracedFromSynthThroughPrepareAndEvaluate) {
  ScratchDir dir("report_synth_e2e");
  auto run = [&](const std::string& args) {
    const RunResult r = run_cxr(dir, args);
    EXPECT_EQ(r.status, 0) << args << "\n" << r.out << r.err;
  };
  run("synth --out '" + dir / "synth" + "' --patients 12 --size 32 --seed 2 --threads 1");
  ASSERT_TRUE(fs::exists(dir / "synth/cxr_synth.json"));
  const std::string prepare = "prepare --csv '" + dir / "synth/Data_Entry_2017_v2020.csv" + "' --images '" +
                              dir / "synth/images" + "' --size 32 --split 0.5,0.25,0.25 --seed 1 --quiet --out ";
  run(prepare + "'" + dir / "synthetic.h5" + "'");
  fs::rename(dir / "synth/cxr_synth.json", dir / "marker_moved_away.json");
  run(prepare + "'" + dir / "plain.h5" + "'");
  EXPECT_EQ(io::PackedDataset(dir / "synthetic.h5").attribute("synthetic"), dir / "synth/cxr_synth.json");
  EXPECT_EQ(io::PackedDataset(dir / "plain.h5").attribute("synthetic"), "");
  save_random_densenet121(dir / "model.h5", {}, 32, 4);
  for (const char* name : {"synthetic", "plain"})
    run("evaluate --weights '" + dir / "model.h5" + "' --data '" + dir / (std::string(name) + ".h5") +
        "' --split test --device cpu --quiet --out '" + dir / (std::string("run_") + name + "/eval") + "'");
  const json ms = json::parse(io::read_text_file(dir / "run_synthetic/eval/metrics.json"));
  const json mp = json::parse(io::read_text_file(dir / "run_plain/eval/metrics.json"));
  EXPECT_EQ(ms["synthetic_data"], true);
  EXPECT_EQ(mp["synthetic_data"], false);
  const std::string hs = report_of(dir / "run_synthetic"), hp = report_of(dir / "run_plain");
  EXPECT_NE(hs.find("synthetic data</h1>"), std::string::npos);
  EXPECT_EQ(hs.find("CheXNet"), std::string::npos);
  EXPECT_EQ(hp.find("synthetic data</h1>"), std::string::npos);
  EXPECT_NE(hp.find("ours &minus; CheXNet"), std::string::npos);
}

// ---- headless Chromium ----------------------------------------------------------------------------

std::string find_chromium() {
  if (const char* env = std::getenv("CXR_CHROMIUM"); env && *env) return env;
  for (const char* name : {"chromium", "chromium-browser", "google-chrome", "chrome"}) {
    const std::string probe = std::string("command -v ") + name + " >/dev/null 2>&1";
    if (std::system(probe.c_str()) == 0) return name;
  }
  return "";
}

struct BrowserRun {
  int status = -1;
  std::string out, err;
};

// Loads file:// path in headless Chromium with extra flags; stdout and stderr captured.
BrowserRun chromium(const std::string& exe, const std::string& page, const std::string& flags,
                    const ScratchDir& dir) {
  const std::string profile = dir / "profile";
  const std::string cmd = "timeout 120 " + exe +
                          " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run"
                          " --disable-extensions --hide-scrollbars --user-data-dir=" +
                          profile + " --enable-logging=stderr --v=0 --virtual-time-budget=10000 " + flags +
                          " file://" + fs::absolute(page).string() + " >" + dir / "chromium.out" + " 2>" +
                          dir / "chromium.err";
  BrowserRun r;
  const int rc = std::system(cmd.c_str());
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = io::read_text_file(dir / "chromium.out");
  r.err = io::read_text_file(dir / "chromium.err");
  return r;
}

// Console messages in Chromium's log. Chromium logs every console message as INFO:CONSOLE whatever
// its level (console.error included; checked with Chromium 156), so any one counts: the report
// writes nothing to the console, and an uncaught exception shows up as "Uncaught ...".
std::vector<std::string> console_messages(const std::string& log) {
  std::vector<std::string> found;
  for (const std::string& line : io::split_lines(log))
    if (line.find(":CONSOLE") != std::string::npos) found.push_back(line);
  return found;
}

// "CXR-CHECK images=N broken=B errors=E" from the dumped DOM; false when the script never ran.
bool parse_check(const std::string& dom, int* images, int* broken, int* errors, std::string* detail) {
  std::smatch m;
  const std::regex re("CXR-CHECK images=(\\d+) broken=(\\d+) errors=(\\d+)([^<]*)");
  if (!std::regex_search(dom, m, re)) return false;
  *images = std::stoi(m[1]), *broken = std::stoi(m[2]), *errors = std::stoi(m[3]);
  *detail = m[4];
  return true;
}

TEST(Report, HeadlessChromiumRendersWithoutErrors) {
  const std::string exe = find_chromium();
  if (exe.empty())
    GTEST_SKIP() << "chromium is not installed (Debian: apt-get install chromium; or set CXR_CHROMIUM)";
  ScratchDir dir("report_chromium");
  const std::string run_dir = dir / "run_folder";
  make_run_folder(run_dir);

  // 1. A test build of the page records broken images and errors into the DOM after loading.
  app::ReportOptions opt;
  opt.run_dir = run_dir;
  opt.out = dir / "checked.html";
  opt.check_script = true;
  const auto info = app::write_report(opt);
  BrowserRun b = chromium(exe, opt.out, "--dump-dom", dir);
  ASSERT_EQ(b.status, 0) << b.err.substr(0, 2000);
  int images = -1, broken = -1, errors = -1;
  std::string detail;
  ASSERT_TRUE(parse_check(b.out, &images, &broken, &errors, &detail))
      << "the check script did not run:\n"
      << b.out.substr(0, 500) << b.err.substr(0, 1500);
  EXPECT_EQ(images, info.images);
  EXPECT_EQ(broken, 0) << detail;
  EXPECT_EQ(errors, 0) << detail;
  EXPECT_TRUE(console_messages(b.err).empty()) << console_messages(b.err).front();

  // 2. The detector works: a page with a corrupt image and a console error is caught.
  write_file(dir / "bad.html",
             "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">" +
                 std::string("</head><body><img alt=\"corrupt\" src=\"data:image/png;base64,AAAA\">"
                             "<script>console.error('deliberate');</script></body></html>"));
  {
    // Reuse the report's own check script by splicing it into the bad page's head.
    const std::string checked = io::read_text_file(opt.out);
    const size_t s0 = checked.find("<script>"), s1 = checked.find("</script>") + 9;
    std::string bad = io::read_text_file(dir / "bad.html");
    bad.insert(bad.find("</head>"), checked.substr(s0, s1 - s0));
    write_file(dir / "bad.html", bad);
  }
  b = chromium(exe, dir / "bad.html", "--dump-dom", dir);
  ASSERT_TRUE(parse_check(b.out, &images, &broken, &errors, &detail)) << b.out.substr(0, 500);
  EXPECT_EQ(broken, 1);
  EXPECT_GE(errors, 1);
  EXPECT_FALSE(console_messages(b.err).empty()) << "Chromium's log should show the console error:\n"
                                                << b.err.substr(0, 1500);

  // 3. The real page (no script) renders to a screenshot with nothing logged at error level.
  app::ReportOptions plain;
  plain.run_dir = run_dir;
  const auto real = app::write_report(plain);
  const std::string shot = dir / "report.png";
  b = chromium(exe, real.path, "--screenshot=" + shot + " --window-size=1280,2400", dir);
  ASSERT_EQ(b.status, 0) << b.err.substr(0, 2000);
  EXPECT_TRUE(console_messages(b.err).empty()) << console_messages(b.err).front();
  io::GreyImage img;
  std::string e;
  ASSERT_TRUE(io::decode_grey(shot, &img, &e)) << e;
  EXPECT_EQ(img.width, 1280);
  EXPECT_EQ(img.height, 2400);
  // Not blank: the page draws text, tables and charts.
  int64_t dark = 0;
  for (uint8_t p : img.pixels) dark += p < 128;
  EXPECT_GT(dark, 2000);
  const std::string keep = (fs::path(::testing::TempDir()) / "cxr_report_screenshot.png").string();
  fs::copy_file(shot, keep, fs::copy_options::overwrite_existing);
  std::printf("screenshot: %s\n", keep.c_str());
}

}  // namespace
}  // namespace cxr::test
