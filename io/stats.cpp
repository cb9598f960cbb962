#include "io/stats.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <vector>

#include "io/fileutil.h"
#include "io/image.h"

#define STB_EASY_FONT_IMPLEMENTATION
#include <stb_easy_font.h>

namespace cxr::io {

ClassStats class_stats(const PackedDataset& d) {
  ClassStats st;
  const auto& labels = d.labels();
  for (int64_t i = 0; i < d.size(); ++i) {
    const int s = static_cast<int>(d.split()[i]);
    if (s >= kNumSplits) {
      ++st.excluded;
      continue;
    }
    ++st.images[s];
    for (int c = 0; c < kNumClasses; ++c) st.positives[s][c] += labels[i * kNumClasses + c];
  }
  return st;
}

namespace {

constexpr int kW = 900, kH = 520, kLeft = 60, kRight = 20, kTop = 40, kBottom = 150;
const uint8_t kPos[3] = {31, 119, 180}, kNeg[3] = {255, 127, 14};

struct Rgb {
  std::vector<uint8_t> px = std::vector<uint8_t>(kW * kH * 3, 255);
  void rect(int x0, int y0, int x1, int y1, const uint8_t* col) {
    for (int y = std::max(0, y0); y < std::min(kH, y1); ++y)
      for (int x = std::max(0, x0); x < std::min(kW, x1); ++x)
        for (int c = 0; c < 3; ++c) px[(y * kW + x) * 3 + c] = col[c];
  }
  // Text with stb_easy_font (quads, 1 unit = 1 pixel at scale 1); vertical = rotated 90 degrees.
  void text(int x, int y, const std::string& s, bool vertical = false) {
    static thread_local char buf[60000];
    const int quads = stb_easy_font_print(0, 0, const_cast<char*>(s.c_str()), nullptr, buf, sizeof buf);
    const uint8_t black[3] = {0, 0, 0};
    for (int q = 0; q < quads; ++q) {
      const float* v = reinterpret_cast<const float*>(buf + q * 64);  // 4 vertices x (x, y, z, color)
      const int qx0 = static_cast<int>(v[0]), qy0 = static_cast<int>(v[1]);
      const int qx1 = static_cast<int>(v[8]), qy1 = static_cast<int>(v[9]);
      if (!vertical) rect(x + qx0, y + qy0, x + qx1, y + qy1, black);
      else rect(x + qy0, y - qx1, x + qy1, y - qx0, black);
    }
  }
};

}  // namespace

void write_balance_charts(const ClassStats& st, Split split, const std::string& dir) {
  std::filesystem::create_directories(dir);
  const int s = static_cast<int>(split);
  const double plot_w = kW - kLeft - kRight, plot_h = kH - kTop - kBottom;
  const double group = plot_w / kNumClasses, bar = group * 0.38;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\"" << kH
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg << "<text x=\"" << kW / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">Positive vs negative frequency per class ("
      << kSplitNames[s] << ", " << st.images[s] << " images)</text>\n";
  Rgb png;
  const uint8_t grey[3] = {200, 200, 200}, black[3] = {0, 0, 0};
  char buf[64];
  for (int t = 0; t <= 10; t += 2) {  // y grid and labels
    const double y = kTop + plot_h * (1 - t / 10.0);
    svg << "<line x1=\"" << kLeft << "\" x2=\"" << kW - kRight << "\" y1=\"" << y << "\" y2=\"" << y
        << "\" stroke=\"#ccc\"/>\n<text x=\"" << kLeft - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">" << t / 10.0
        << "</text>\n";
    png.rect(kLeft, static_cast<int>(y), kW - kRight, static_cast<int>(y) + 1, grey);
    std::snprintf(buf, sizeof buf, "%.1f", t / 10.0);
    png.text(kLeft - 28, static_cast<int>(y) - 4, buf);
  }
  for (int c = 0; c < kNumClasses; ++c) {
    const double pf = st.pos_freq(s, c), nf = st.images[s] ? 1.0 - pf : 0.0;
    const double x = kLeft + group * c + group * 0.1;
    const double hp = plot_h * pf, hn = plot_h * nf, base = kTop + plot_h;
    svg << "<rect x=\"" << x << "\" y=\"" << base - hp << "\" width=\"" << bar << "\" height=\"" << hp
        << "\" fill=\"#1f77b4\"><title>" << kClassNames[c] << " positive " << pf << "</title></rect>\n";
    svg << "<rect x=\"" << x + bar << "\" y=\"" << base - hn << "\" width=\"" << bar << "\" height=\"" << hn
        << "\" fill=\"#ff7f0e\"><title>" << kClassNames[c] << " negative " << nf << "</title></rect>\n";
    svg << "<text transform=\"translate(" << x + bar << "," << base + 8 << ") rotate(60)\">" << kClassNames[c] << "</text>\n";
    png.rect(static_cast<int>(x), static_cast<int>(base - hp), static_cast<int>(x + bar), static_cast<int>(base), kPos);
    png.rect(static_cast<int>(x + bar), static_cast<int>(base - hn), static_cast<int>(x + 2 * bar), static_cast<int>(base), kNeg);
    png.text(static_cast<int>(x + bar) - 4, static_cast<int>(base) + 6 + 8 * static_cast<int>(kClassNames[c].size()),
             std::string(kClassNames[c]), true);
  }
  png.rect(kLeft, kTop + static_cast<int>(plot_h), kW - kRight, kTop + static_cast<int>(plot_h) + 1, black);
  svg << "<rect x=\"" << kW - 190 << "\" y=\"34\" width=\"12\" height=\"12\" fill=\"#1f77b4\"/><text x=\"" << kW - 172
      << "\" y=\"45\">positive</text>\n<rect x=\"" << kW - 110 << "\" y=\"34\" width=\"12\" height=\"12\" fill=\"#ff7f0e\"/><text x=\""
      << kW - 92 << "\" y=\"45\">negative</text>\n</svg>\n";
  png.rect(kW - 190, 34, kW - 178, 46, kPos);
  png.text(kW - 172, 36, "positive");
  png.rect(kW - 110, 34, kW - 98, 46, kNeg);
  png.text(kW - 92, 36, "negative");
  std::snprintf(buf, sizeof buf, "Positive vs negative frequency per class (%s)", kSplitNames[s]);
  png.text(kW / 2 - 150, 12, buf);
  write_text_file(dir + "/class_balance.svg", svg.str());
  write_png(dir + "/class_balance.png", png.px.data(), kW, kH, 3);
}

}  // namespace cxr::io
