// io/plot: the SVG parses as XML (expat; a plain tag scan when built without it) with one <path class="series"> per curve and the legend text
// expected; the PNG (cairo) decodes with stb_image at the figure's size, with non-uniform pixels and
// the curves' colours present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "engine/error.h"
#include "io/classes.h"
#include "io/fileutil.h"
#include "io/metrics.h"
#include "io/plot.h"
#include "test_data_util.h"

#ifdef CXR_HAVE_EXPAT
#include <expat.h>
#endif

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#if __has_include(<stb_image.h>)
#include <stb_image.h>
#else
#include <stb/stb_image.h>
#endif

namespace cxr::io {
namespace {

// What the tests look for in an SVG: elements by name, the series paths and all text.
struct SvgSummary {
  std::map<std::string, int> elements;
  std::vector<std::string> series_d;  // the d attribute of each <path class="series">
  std::vector<std::string> texts;     // character data of each <text>
  std::string error;                  // non-empty when the XML is not well-formed
};

#ifdef CXR_HAVE_EXPAT
struct ParseState {
  SvgSummary* out;
  bool in_text = false;
};

SvgSummary parse_svg(const std::string& svg) {
  SvgSummary sum;
  ParseState st{&sum};
  XML_Parser p = XML_ParserCreate("UTF-8");
  XML_SetUserData(p, &st);
  XML_SetElementHandler(
      p,
      [](void* ud, const XML_Char* name, const XML_Char** attrs) {
        auto* s = static_cast<ParseState*>(ud);
        const std::string n = name;
        ++s->out->elements[n];
        std::map<std::string, std::string> a;
        for (int i = 0; attrs[i]; i += 2) a[attrs[i]] = attrs[i + 1];
        if (n == "path" && a["class"] == "series") s->out->series_d.push_back(a["d"]);
        if (n == "text") {
          s->in_text = true;
          s->out->texts.emplace_back();
        }
      },
      [](void* ud, const XML_Char* name) {
        if (std::string(name) == "text") static_cast<ParseState*>(ud)->in_text = false;
      });
  XML_SetCharacterDataHandler(p, [](void* ud, const XML_Char* s, int len) {
    auto* st = static_cast<ParseState*>(ud);
    if (st->in_text) st->out->texts.back().append(s, len);
  });
  if (XML_Parse(p, svg.data(), static_cast<int>(svg.size()), 1) == XML_STATUS_ERROR)
    sum.error = std::string(XML_ErrorString(XML_GetErrorCode(p))) + " at line " +
                std::to_string(XML_GetCurrentLineNumber(p));
  XML_ParserFree(p);
  return sum;
}
#else
// Without expat (CXR_HAVE_EXPAT unset): a scan of the tags our writer emits (no well-formedness check).
std::string unescape(std::string t) {
  for (auto [from, to] : {std::pair<const char*, const char*>{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&amp;", "&"}})
    for (size_t at; (at = t.find(from)) != std::string::npos;) t.replace(at, std::strlen(from), to);
  return t;
}
std::string attr(const std::string& tag, const std::string& name) {
  const size_t at = tag.find(" " + name + "=\"");
  if (at == std::string::npos) return "";
  const size_t b = at + name.size() + 3;
  return unescape(tag.substr(b, tag.find('"', b) - b));
}
SvgSummary parse_svg(const std::string& svg) {
  SvgSummary sum;
  for (size_t at = svg.find('<'); at != std::string::npos; at = svg.find('<', at + 1)) {
    if (svg[at + 1] == '/' || svg[at + 1] == '?') continue;
    const std::string tag = svg.substr(at, svg.find('>', at) - at);
    const std::string name = tag.substr(1, tag.find_first_of(" />", 1) - 1);
    ++sum.elements[name];
    if (name == "path" && attr(tag, "class") == "series") sum.series_d.push_back(attr(tag, "d"));
    if (name == "text") {
      const size_t b = svg.find('>', at) + 1;
      sum.texts.push_back(unescape(svg.substr(b, svg.find("</text>", b) - b)));
    }
  }
  return sum;
}
#endif

bool has_text(const SvgSummary& s, const std::string& needle) {
  for (const auto& t : s.texts)
    if (t.find(needle) != std::string::npos) return true;
  return false;
}

// 14 classes of 300 images, class c separated by c/5 standard deviations (AUC from 0.5 up); the
// last class has no positives, so its AUC is undefined.
void roc_inputs(std::vector<RocCurve>* curves, std::vector<double>* aucs) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> g;
  std::vector<float> s, y;
  for (int i = 0; i < 300; ++i)
    for (int c = 0; c < kNumClasses; ++c) {
      const float label = (c < kNumClasses - 1 && rng() % 5 == 0) ? 1.f : 0.f;
      y.push_back(label);
      s.push_back(g(rng) + label * c / 5.0f);
    }
  *curves = per_class_roc_curves(s, y, kNumClasses);
  *aucs = per_class_auc(s, y, kNumClasses);
}

std::vector<EpochPoint> epochs(int n) {
  std::vector<EpochPoint> e;
  for (int i = 1; i <= n; ++i)
    e.push_back({double(i), 0.7 / i + 0.1, 0.75 / std::sqrt(i) + 0.1, kUndefined, 0.6 + 0.3 * (1 - std::exp(-i / 3.0))});
  return e;
}

TEST(PlotSvg, RocFigureHasOneCurvePerClassAndTheLegend) {
  std::vector<RocCurve> curves;
  std::vector<double> aucs;
  roc_inputs(&curves, &aucs);
  ASSERT_TRUE(std::isnan(aucs.back()));
  const SvgSummary svg = parse_svg(figure_svg(roc_figure(curves, aucs, "ROC <test> & co")));
  ASSERT_TRUE(svg.error.empty()) << svg.error;
  EXPECT_EQ(svg.elements.at("svg"), 1);
  ASSERT_EQ(svg.series_d.size(), static_cast<size_t>(kNumClasses));
  for (int c = 0; c < kNumClasses - 1; ++c) {
    // A full ROC curve has one point per distinct score plus the origin.
    const auto points = std::count(svg.series_d[c].begin(), svg.series_d[c].end(), 'L') + 1;
    EXPECT_EQ(static_cast<size_t>(points), curves[c].size()) << kClassNames[c];
    char label[64];
    std::snprintf(label, sizeof label, "%s  %.3f", std::string(kClassNames[c]).c_str(), aucs[c]);
    EXPECT_TRUE(has_text(svg, label)) << label;
  }
  EXPECT_TRUE(svg.series_d.back().empty());  // undefined class: legend entry, no line
  EXPECT_TRUE(has_text(svg, "Hernia  n/a"));
  char title[64];
  std::snprintf(title, sizeof title, "ROC <test> & co (mean AUC %.3f)", mean_auc(aucs));
  EXPECT_TRUE(has_text(svg, title));  // escaped in the file, restored by the parser
  EXPECT_TRUE(has_text(svg, "False positive rate (1 - specificity)"));
}

TEST(PlotSvg, TrainingFigureHasTrainAndValidationPanels) {
  std::vector<EpochPoint> e = epochs(8);
  e[3].val_loss = kUndefined;  // a missing validation: the line breaks there
  const SvgSummary svg = parse_svg(figure_svg(training_figure(e, "run 1")));
  ASSERT_TRUE(svg.error.empty()) << svg.error;
  // Loss: train + validation; AUC: validation only (train AUC never measured).
  ASSERT_EQ(svg.series_d.size(), 3u);
  EXPECT_EQ(std::count(svg.series_d[0].begin(), svg.series_d[0].end(), 'M'), 1);
  EXPECT_EQ(std::count(svg.series_d[1].begin(), svg.series_d[1].end(), 'M'), 2);
  EXPECT_EQ(svg.elements.at("circle"), 8 + 7 + 8 + 3);  // a marker per measured point, one per legend entry
  EXPECT_TRUE(has_text(svg, "run 1: loss"));
  EXPECT_TRUE(has_text(svg, "run 1: mean AUC"));
  EXPECT_TRUE(has_text(svg, "validation"));
  // Integer epoch ticks only.
  for (const auto& t : svg.texts) EXPECT_EQ(t.find("2.5"), std::string::npos) << t;
}

TEST(PlotSvg, EdgeCasesStillDraw) {
  // One epoch, a constant series, and an empty chart: axes fall back to sensible ranges.
  for (int n : {0, 1}) {
    const SvgSummary svg = parse_svg(figure_svg(training_figure(epochs(n))));
    ASSERT_TRUE(svg.error.empty()) << svg.error;
    EXPECT_EQ(svg.series_d.size(), n ? 3u : 0u);
  }
  LineChart flat;
  flat.series.push_back({"flat", {1, 2, 3}, {0.5, 0.5, 0.5}, palette_color(2)});
  Figure fig;
  fig.panels = {flat};
  const std::string text = figure_svg(fig);
  EXPECT_EQ(text.find("nan"), std::string::npos);
  EXPECT_EQ(text.find("inf"), std::string::npos);
  fig.panels[0].series[0].y.pop_back();
  EXPECT_THROW(figure_svg(fig), Error);  // x and y lengths differ
  EXPECT_THROW(figure_svg(Figure{}), Error);
}

TEST(PlotSvg, TheXmlCheckRejectsMalformedSvg) {
#ifdef CXR_HAVE_EXPAT
  EXPECT_FALSE(parse_svg("<svg><text>a</svg>").error.empty());
  EXPECT_FALSE(parse_svg("<svg><text>a & b</text></svg>").error.empty());  // unescaped &
  EXPECT_TRUE(parse_svg(figure_svg(training_figure(epochs(3), "a & <b>"))).error.empty());
#else
  GTEST_SKIP() << "built without expat (CXR_HAVE_EXPAT): the SVG is scanned, not parsed";
#endif
}

TEST(PlotPng, RocFigureDecodesWithTheRightSizeAndColours) {
  if (!png_supported()) {
    EXPECT_THROW(write_png(roc_figure({}, {}), "/tmp/never.png"), Error);
    GTEST_SKIP() << "built without cairo (CXR_HAVE_CAIRO): no PNG charts";
  }
  std::vector<RocCurve> curves;
  std::vector<double> aucs;
  roc_inputs(&curves, &aucs);
  const Figure fig = roc_figure(curves, aucs);
  test::ScratchDir dir("plot_png");
  const auto written = write_figure(fig, dir / "roc");
  ASSERT_EQ(written.size(), 2u);
  EXPECT_TRUE(std::filesystem::exists(dir / "roc.svg"));
  const std::string png = read_text_file(dir / "roc.png");
  int w = 0, h = 0, ch = 0;
  stbi_uc* px = stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(png.data()), static_cast<int>(png.size()), &w,
                                      &h, &ch, 3);
  ASSERT_NE(px, nullptr) << stbi_failure_reason();
  EXPECT_EQ(w, fig.width);
  EXPECT_EQ(h, fig.height);
  std::set<uint32_t> colours;
  int64_t white = 0;
  auto near = [&](const stbi_uc* p, Color c) {
    return std::abs(p[0] - c.r) + std::abs(p[1] - c.g) + std::abs(p[2] - c.b) < 30;
  };
  std::vector<int64_t> hits(kNumClasses, 0);
  for (int64_t i = 0; i < int64_t(w) * h; ++i) {
    const stbi_uc* p = px + 3 * i;
    colours.insert(p[0] << 16 | p[1] << 8 | p[2]);
    white += p[0] == 255 && p[1] == 255 && p[2] == 255;
    for (int c = 0; c < kNumClasses; ++c) hits[c] += near(p, palette_color(c));
  }
  stbi_image_free(px);
  EXPECT_GT(colours.size(), 50u);               // antialiased lines and text
  EXPECT_GT(white, int64_t(w) * h / 2);         // mostly background
  EXPECT_LT(white, int64_t(w) * h * 98 / 100);  // but something drawn
  for (int c = 0; c < kNumClasses; ++c) EXPECT_GT(hits[c], 20) << "colour of " << kClassNames[c] << " missing";
}

TEST(PlotPng, TrainingFigureDecodes) {
  if (!png_supported()) GTEST_SKIP() << "built without cairo (CXR_HAVE_CAIRO): no PNG charts";
  test::ScratchDir dir("plot_png_train");
  const Figure fig = training_figure(epochs(5), "demo");
  write_png(fig, dir / "training.png");
  int w = 0, h = 0, ch = 0;
  const std::string png = read_text_file(dir / "training.png");
  stbi_uc* px = stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(png.data()), static_cast<int>(png.size()), &w,
                                      &h, &ch, 3);
  ASSERT_NE(px, nullptr) << stbi_failure_reason();
  EXPECT_EQ(w, 1100);
  EXPECT_EQ(h, 440);
  int64_t dark = 0;
  for (int64_t i = 0; i < int64_t(w) * h; ++i) dark += px[3 * i] < 100 && px[3 * i + 1] < 100 && px[3 * i + 2] < 100;
  stbi_image_free(px);
  EXPECT_GT(dark, 500);  // text and axes were drawn (the toy font API found a font)
}

TEST(PlotPng, UnwritablePathThrows) {
  if (!png_supported()) GTEST_SKIP() << "built without cairo (CXR_HAVE_CAIRO): no PNG charts";
  EXPECT_THROW(write_png(training_figure(epochs(2)), "/nonexistent-dir/x/training.png"), Error);
}

}  // namespace
}  // namespace cxr::io
