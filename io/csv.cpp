#include "io/csv.h"

#include <cmath>

#include <charconv>
#include <cstdlib>
#include <sstream>
#include <unordered_map>

#include "engine/error.h"
#include "io/fileutil.h"

namespace cxr::io {
namespace {

[[noreturn]] void fail_at(const std::string& path, int64_t line, const std::string& msg) {
  throw Error(path + ":" + std::to_string(line) + ": " + msg);
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

// Splits one CSV line on commas; a field in double quotes may contain commas ("" is a quote).
std::vector<std::string> split_fields(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (quoted) {
      if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (ch == '"') {
        quoted = false;
      } else {
        cur += ch;
      }
    } else if (ch == '"') {
      quoted = true;
    } else if (ch == ',') {
      out.push_back(trim(cur));
      cur.clear();
    } else {
      cur += ch;
    }
  }
  out.push_back(trim(cur));
  return out;
}

// A header column and the fields it spans: "OriginalImage[Width,Height]" is one column, two fields.
struct Column {
  std::string name;
  int first_field = 0;
  int width = 1;
};

std::vector<Column> parse_header(const std::vector<std::string>& tokens, int* total_fields) {
  std::vector<Column> cols;
  int field = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    Column c{tokens[i], field, 1};
    // A name with '[' but no ']' continues over the following tokens up to the one closing it.
    if (c.name.find('[') != std::string::npos && c.name.find(']') == std::string::npos) {
      while (i + 1 < tokens.size()) {
        ++i;
        c.name += "," + tokens[i];
        ++c.width;
        if (tokens[i].find(']') != std::string::npos) break;
      }
    }
    field += c.width;
    cols.push_back(c);
  }
  // Trailing unnamed columns (a header ending in ',') are not fields rows must have.
  while (!cols.empty() && cols.back().name.empty()) {
    field -= cols.back().width;
    cols.pop_back();
  }
  *total_fields = field;
  return cols;
}

bool parse_int(const std::string& s, int64_t* v) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  auto r = std::from_chars(b, e, *v);
  return r.ec == std::errc() && r.ptr == e;
}

bool parse_double(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

}  // namespace

int64_t patient_from_image_name(const std::string& image) {
  if (image.size() < 9 || image[8] != '_') return -1;
  int64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    if (image[i] < '0' || image[i] > '9') return -1;
    v = v * 10 + (image[i] - '0');
  }
  return v;
}

std::string label_string(const std::array<uint8_t, kNumClasses>& labels) {
  std::string s;
  for (int c = 0; c < kNumClasses; ++c) {
    if (!labels[c]) continue;
    if (!s.empty()) s += '|';
    s += kClassNames[c];
  }
  return s.empty() ? std::string(kNoFinding) : s;
}

namespace {

std::string shown(const std::string& field) { return quote_for_message(field, 80, /*with_length=*/false); }

// "Mass|Nodule" or "No Finding" (alone) -> labels.
void parse_labels(const std::string& path, int64_t line, const std::string& field,
                  std::array<uint8_t, kNumClasses>* labels) {
  if (trim(field).empty()) fail_at(path, line, "empty Finding Labels: expected 'No Finding' or labels joined by '|'");
  std::stringstream ls(field);
  std::string lab;
  bool no_finding = false, any = false;
  while (std::getline(ls, lab, '|')) {
    lab = trim(lab);
    if (lab == kNoFinding) {
      no_finding = true;
      continue;
    }
    const int c = class_index(lab);
    if (c < 0 || lab == "Infiltrate")
      fail_at(path, line, "unknown label " + shown(lab) + " (known: " + class_list() + ", No Finding)");
    (*labels)[size_t(c)] = 1;
    any = true;
  }
  if (no_finding && any) fail_at(path, line, "'No Finding' together with findings in " + shown(field));
}

}  // namespace

std::vector<LabelRow> read_label_csv(const std::string& path, const LabelCsvOptions& opt) {
  const std::vector<std::string> lines = read_lines(path);
  if (lines.empty()) fail_at(path, 1, "empty file: expected a header line");
  int nfields = 0;
  const std::vector<Column> cols = parse_header(split_fields(lines[0]), &nfields);
  auto find_col = [&](const char* name, bool required) -> const Column* {
    for (const Column& c : cols)
      if (c.name == name) return &c;
    if (required) fail_at(path, 1, std::string("missing column '") + name + "' in header");
    return nullptr;
  };
  const Column* c_image = find_col("Image Index", true);
  const Column* c_labels = find_col("Finding Labels", true);
  const Column* c_patient = find_col("Patient ID", !opt.text_patient_ids);
  const Column* c_follow = find_col("Follow-up #", false);
  const Column* c_age = find_col("Patient Age", false);
  const Column* c_gender = find_col("Patient Gender", false);
  const Column* c_view = find_col("View Position", false);
  const Column* c_size = find_col("OriginalImage[Width,Height]", false);
  const Column* c_spacing = find_col("OriginalImagePixelSpacing[x,y]", false);

  std::vector<LabelRow> rows;
  rows.reserve(lines.size());
  std::unordered_map<std::string, int64_t> seen;
  seen.reserve(lines.size());
  for (size_t li = 1; li < lines.size(); ++li) {
    const int64_t line = static_cast<int64_t>(li) + 1;
    if (trim(lines[li]).empty()) continue;
    std::vector<std::string> f = split_fields(lines[li]);
    // Extra trailing empty fields are tolerated (some exports end every row in ',').
    while (static_cast<int>(f.size()) > nfields && f.back().empty()) f.pop_back();
    if (static_cast<int>(f.size()) != nfields)
      fail_at(path, line, "malformed row: " + std::to_string(f.size()) + " fields, expected " +
                              std::to_string(nfields));
    LabelRow r;
    r.line = line;
    r.image = f[c_image->first_field];
    if (r.image.empty()) fail_at(path, line, "malformed row: empty Image Index");
    parse_labels(path, line, f[c_labels->first_field], &r.labels);
    const std::string pid = c_patient ? f[c_patient->first_field] : std::string();
    if (opt.text_patient_ids) {
      // Hospital IDs are text; empty (or no column) means "take it from the image file".
      r.patient_key = pid;
    } else {
      // A positive integer that agrees with the image name's first 8 digits when it has them.
      if (!parse_int(pid, &r.patient_id) || r.patient_id <= 0)
        fail_at(path, line, "bad patient ID '" + pid + "': expected a positive integer");
      const int64_t from_name = patient_from_image_name(r.image);
      if (from_name >= 0 && from_name != r.patient_id)
        fail_at(path, line, "bad patient ID '" + pid + "': image '" + r.image + "' belongs to patient " +
                                std::to_string(from_name));
    }
    auto get_int = [&](const Column* c, int field_off) -> int {
      if (!c) return 0;
      int64_t v = 0;
      std::string s = f[c->first_field + field_off];
      // Data_Entry_2017.csv (2017 release) writes ages as "058Y".
      if (!s.empty() && (s.back() == 'Y' || s.back() == 'M' || s.back() == 'D')) s.pop_back();
      return parse_int(s, &v) ? static_cast<int>(v) : 0;
    };
    r.follow_up = get_int(c_follow, 0);
    r.age = get_int(c_age, 0);
    if (c_gender) r.gender = f[c_gender->first_field];
    if (c_view) r.view_position = f[c_view->first_field];
    if (c_size && c_size->width == 2) {
      r.width = get_int(c_size, 0);
      r.height = get_int(c_size, 1);
    }
    if (c_spacing && c_spacing->width == 2) {
      parse_double(f[c_spacing->first_field], &r.spacing_x);
      parse_double(f[c_spacing->first_field + 1], &r.spacing_y);
    }
    auto [it, inserted] = seen.emplace(r.image, line);
    if (!inserted)
      fail_at(path, line, "duplicate image '" + r.image + "' (first on line " + std::to_string(it->second) + ")");
    rows.push_back(std::move(r));
  }
  return rows;
}

void write_label_csv(const std::string& path, const std::vector<LabelRow>& rows) {
  std::ostringstream os;
  os << "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n";
  for (const LabelRow& r : rows) {
    os << r.image << ',' << label_string(r.labels) << ',' << r.follow_up << ',' << r.patient_id << ','
       << r.age << ',' << r.gender << ',' << r.view_position << ',' << r.width << ',' << r.height << ','
       << r.spacing_x << ',' << r.spacing_y << '\n';
  }
  write_text_file(path, os.str());
}

std::vector<BBox> read_bbox_csv(const std::string& path) {
  const std::vector<std::string> lines = read_lines(path);
  if (lines.empty()) fail_at(path, 1, "empty file: expected a header line");
  const std::vector<std::string> head = split_fields(lines[0]);
  if (head.size() < 3 || head[0] != "Image Index" || head[1] != "Finding Label")
    fail_at(path, 1, "missing column: expected header 'Image Index,Finding Label,Bbox [x,y,w,h],,,'");
  std::vector<BBox> boxes;
  for (size_t li = 1; li < lines.size(); ++li) {
    const int64_t line = static_cast<int64_t>(li) + 1;
    if (trim(lines[li]).empty()) continue;
    std::vector<std::string> f = split_fields(lines[li]);
    while (f.size() > 6 && f.back().empty()) f.pop_back();
    if (f.size() != 6)
      fail_at(path, line, "malformed row: " + std::to_string(f.size()) + " fields, expected 6");
    BBox b;
    b.line = line;
    b.image = f[0];
    b.cls = class_index(f[1]);
    if (b.cls < 0) fail_at(path, line, "unknown label '" + f[1] + "' (known: " + class_list() + ")");
    double* v[4] = {&b.x, &b.y, &b.w, &b.h};
    // Finite, with a positive width and height, within 100,000 pixels: a NaN, Inf or 1e12 box would
    // make every later computation on it meaningless (the pointing game hung on one).
    constexpr double kMaxCoordinate = 1e5;
    for (int k = 0; k < 4; ++k)
      if (!parse_double(f[2 + k], v[k]) || !std::isfinite(*v[k]) || std::abs(*v[k]) > kMaxCoordinate)
        fail_at(path, line, "bad box value " + shown(f[2 + k]) + ": expected a finite number of pixels within 1e5");
    if (b.w <= 0 || b.h <= 0) fail_at(path, line, "box of width " + f[4] + " and height " + f[5] + ": both must be positive");
    boxes.push_back(std::move(b));
  }
  return boxes;
}

void write_bbox_csv(const std::string& path, const std::vector<BBox>& boxes) {
  std::ostringstream os;
  os.precision(15);
  os << "Image Index,Finding Label,Bbox [x,y,w,h],,,\n";
  for (const BBox& b : boxes) {
    const std::string name = b.cls == 3 ? std::string("Infiltrate") : std::string(kClassNames[b.cls]);
    os << b.image << ',' << name << ',' << b.x << ',' << b.y << ',' << b.w << ',' << b.h << '\n';
  }
  write_text_file(path, os.str());
}

}  // namespace cxr::io
