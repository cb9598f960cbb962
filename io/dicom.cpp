// DICOM files through GDCM (declared in io/dicom.h): the header fields the rendering needs, the
// decoded pixel data, and the choice of modality, VOI and presentation transforms.
#include "io/dicom.h"

#include <gdcmImageReader.h>
#include <gdcmReader.h>
#include <gdcmSequenceOfItems.h>
#include <gdcmTrace.h>
#include <gdcmTransferSyntax.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <sstream>

#include "engine/error.h"
#include "io/isolated_read.h"

namespace cxr::io {
namespace {

DicomOptions g_options;

// GDCM reports on std::cerr what it notices while reading ("Could not find Spacing", "Modality LUT are
// not handled" - we handle it): noise on a command line's stderr. Our own errors say what matters.
void quiet_gdcm() {
  static std::once_flag once;
  std::call_once(once, [] {
    gdcm::Trace::SetDebug(false);
    gdcm::Trace::SetWarning(false);
    gdcm::Trace::SetError(false);
  });
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A text value with the padding DICOM allows (trailing spaces, a trailing NUL for UI) removed, and the
// leading spaces of numeric strings.
std::string text_of(const gdcm::DataSet& ds, uint16_t group, uint16_t element) {
  const gdcm::Tag t(group, element);
  if (!ds.FindDataElement(t)) return "";
  const gdcm::ByteValue* bv = ds.GetDataElement(t).GetByteValue();
  if (!bv || bv->GetLength() == 0) return "";
  std::string s(bv->GetPointer(), bv->GetLength());
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  size_t b = 0;
  while (b < s.size() && s[b] == ' ') ++b;
  return s.substr(b);
}

// A multi-valued text value split on '\' (VM > 1), each value trimmed.
std::vector<std::string> values_of(const gdcm::DataSet& ds, uint16_t group, uint16_t element) {
  std::vector<std::string> out;
  const std::string s = text_of(ds, group, element);
  if (s.empty()) return out;
  std::stringstream ss(s);
  std::string v;
  while (std::getline(ss, v, '\\')) {
    while (!v.empty() && v.back() == ' ') v.pop_back();
    size_t b = 0;
    while (b < v.size() && v[b] == ' ') ++b;
    out.push_back(v.substr(b));
  }
  return out;
}

bool parse_number(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(*v);
}

// US/SS/OW values: 16-bit words in the data set's byte order.
std::vector<uint16_t> words_of(const gdcm::DataElement& de, bool big_endian) {
  std::vector<uint16_t> out;
  const gdcm::ByteValue* bv = de.GetByteValue();
  if (!bv) return out;
  out.resize(bv->GetLength() / 2);
  std::memcpy(out.data(), bv->GetPointer(), out.size() * 2);
  if (big_endian)
    for (uint16_t& w : out) w = static_cast<uint16_t>((w >> 8) | (w << 8));
  return out;
}

// The first item of a LUT sequence ((0028,3000) or (0028,3010)) as a DicomLut; `which` is 1-based.
// Returns an empty string or the reason the LUT is unusable.
std::string read_lut(const gdcm::DataSet& ds, const gdcm::Tag& seq, size_t which, bool big_endian,
                     bool signed_first, DicomLut* lut, size_t* items) {
  *items = 0;
  if (!ds.FindDataElement(seq)) return "";
  gdcm::SmartPointer<gdcm::SequenceOfItems> sq = ds.GetDataElement(seq).GetValueAsSQ();
  if (!sq || sq->GetNumberOfItems() == 0) return "";
  *items = sq->GetNumberOfItems();
  if (which > *items) return "";
  const gdcm::DataSet& item = sq->GetItem(which).GetNestedDataSet();
  const gdcm::Tag t_desc(0x0028, 0x3002), t_data(0x0028, 0x3006);
  if (!item.FindDataElement(t_desc) || !item.FindDataElement(t_data))
    return "LUT Descriptor (0028,3002) or LUT Data (0028,3006) missing";
  const std::vector<uint16_t> desc = words_of(item.GetDataElement(t_desc), big_endian);
  if (desc.size() != 3) return "LUT Descriptor (0028,3002) has " + std::to_string(desc.size()) + " values, expected 3";
  const int64_t entries = desc[0] == 0 ? 65536 : desc[0];
  // The first value mapped is US or SS as the Pixel Representation (C.11.1.1.1).
  lut->first = signed_first ? static_cast<int16_t>(desc[1]) : desc[1];
  lut->bits = desc[2];
  if (lut->bits < 8 || lut->bits > 16)
    return "LUT Descriptor (0028,3002) gives " + std::to_string(lut->bits) + " bits per entry, expected 8 to 16";
  lut->data = words_of(item.GetDataElement(t_data), big_endian);
  // An 8-bit LUT may be stored two entries to a word (OW); expand it.
  if (lut->bits == 8 && static_cast<int64_t>(lut->data.size()) * 2 == entries) {
    std::vector<uint16_t> bytes;
    const gdcm::ByteValue* bv = item.GetDataElement(t_data).GetByteValue();
    for (uint32_t i = 0; i < bv->GetLength(); ++i) bytes.push_back(static_cast<uint8_t>(bv->GetPointer()[i]));
    lut->data = bytes;
  }
  if (static_cast<int64_t>(lut->data.size()) != entries)
    return "LUT Data (0028,3006) has " + std::to_string(lut->data.size()) + " entries, its descriptor says " +
           std::to_string(entries);
  return "";
}

const char* function_name(VoiFunction f) {
  switch (f) {
    case VoiFunction::Linear: return "LINEAR";
    case VoiFunction::LinearExact: return "LINEAR_EXACT";
    case VoiFunction::Sigmoid: return "SIGMOID";
  }
  return "?";
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

// Fills the header fields of DicomInfo from the data set.
void read_info(const gdcm::File& file, DicomInfo* info) {
  const gdcm::DataSet& ds = file.GetDataSet();
  info->transfer_syntax = text_of(file.GetHeader(), 0x0002, 0x0010);
  info->sop_instance_uid = text_of(ds, 0x0008, 0x0018);
  info->patient_id = text_of(ds, 0x0010, 0x0020);
  info->view_position = text_of(ds, 0x0018, 0x5101);
  info->photometric = text_of(ds, 0x0028, 0x0004);
  info->burned_in_annotation = text_of(ds, 0x0028, 0x0301) == "YES";
  double v = 0;
  info->frames = parse_number(text_of(ds, 0x0028, 0x0008), &v) ? static_cast<int>(v) : 1;
}

// The transforms of C.11 as the file gives them; "" or the reason they cannot be applied.
std::string choose_pipeline(const gdcm::DataSet& ds, bool big_endian, bool is_signed, const std::string& photometric,
                            const DicomOptions& opt, GreyPipeline* p, std::string* voi_desc) {
  size_t items = 0;
  // Modality LUT: the sequence replaces Rescale Slope/Intercept (C.11.1: "either ... or").
  std::string why = read_lut(ds, gdcm::Tag(0x0028, 0x3000), 1, big_endian, is_signed, &p->modality, &items);
  if (!why.empty()) return "Modality LUT Sequence: " + why;
  p->modality_lut = items > 0;
  if (!p->modality_lut) {
    const std::string s = text_of(ds, 0x0028, 0x1053), i = text_of(ds, 0x0028, 0x1052);
    if (!s.empty() && (!parse_number(s, &p->slope) || p->slope == 0))
      return "Rescale Slope (0028,1053) is '" + s + "', expected a non-zero number";
    if (!i.empty() && !parse_number(i, &p->intercept))
      return "Rescale Intercept (0028,1052) is '" + i + "', expected a number";
  }
  // VOI: windows first, else the VOI LUT Sequence, else the image's range.
  const std::vector<std::string> centers = values_of(ds, 0x0028, 0x1050), widths = values_of(ds, 0x0028, 0x1051);
  const size_t windows = std::min(centers.size(), widths.size());
  const size_t k = static_cast<size_t>(std::max(1, opt.window));
  if (windows > 0) {
    if (k > windows)
      return "--dicom-window " + std::to_string(k) + " but the file has " + std::to_string(windows) + " window" +
             (windows == 1 ? "" : "s");
    const std::string fn = text_of(ds, 0x0028, 0x1056);
    if (fn.empty() || fn == "LINEAR") p->function = VoiFunction::Linear;
    else if (fn == "LINEAR_EXACT") p->function = VoiFunction::LinearExact;
    else if (fn == "SIGMOID") p->function = VoiFunction::Sigmoid;
    else return "VOI LUT Function (0028,1056) is '" + fn + "', expected LINEAR, LINEAR_EXACT or SIGMOID";
    if (!parse_number(centers[k - 1], &p->center))
      return "Window Center (0028,1050) value " + std::to_string(k) + " is '" + centers[k - 1] + "', expected a number";
    if (!parse_number(widths[k - 1], &p->width))
      return "Window Width (0028,1051) value " + std::to_string(k) + " is '" + widths[k - 1] + "', expected a number";
    // C.11.2.1.2.1: "Window Width shall always be greater than or equal to 1" for LINEAR; > 0 otherwise.
    if (p->function == VoiFunction::Linear ? p->width < 1 : p->width <= 0)
      return "Window Width (0028,1051) is " + fmt(p->width) + ", expected " +
             (p->function == VoiFunction::Linear ? ">= 1 for LINEAR" : "> 0");
    p->voi = GreyPipeline::Voi::Window;
    *voi_desc = "window " + std::to_string(k) + " of " + std::to_string(windows) + " (center " + fmt(p->center) +
                ", width " + fmt(p->width) + ", " + function_name(p->function) + ")";
  } else {
    // The VOI LUT's first value mapped is signed when the modality output can be negative.
    const bool signed_voi = is_signed || p->intercept < 0 || p->slope < 0;
    why = read_lut(ds, gdcm::Tag(0x0028, 0x3010), k, big_endian, signed_voi, &p->voi_lut, &items);
    if (!why.empty()) return "VOI LUT Sequence: " + why;
    if (items > 0 && k > items)
      return "--dicom-window " + std::to_string(k) + " but the file has no windows and " + std::to_string(items) +
             " VOI LUT" + (items == 1 ? "" : "s");
    if (items > 0) {
      p->voi = GreyPipeline::Voi::Lut;
      *voi_desc = "VOI LUT " + std::to_string(k) + " of " + std::to_string(items);
    } else {
      if (k > 1) return "--dicom-window " + std::to_string(k) + " but the file has no windows and no VOI LUT";
      p->voi = GreyPipeline::Voi::MinMax;
      *voi_desc = "the image's range (no window or VOI LUT in the file)";
    }
  }
  p->invert = photometric == "MONOCHROME1" || text_of(ds, 0x2050, 0x0020) == "INVERSE";
  return "";
}

// Where the Pixel Data element's value starts in the file (-1 if it cannot be found): GDCM's reader,
// told to skip that element, stops right after its header.
int64_t pixel_data_offset(const std::string& path) {
  const gdcm::Tag pixel_data(0x7fe0, 0x0010);
  gdcm::Reader reader;
  reader.SetFileName(path.c_str());
  if (!reader.ReadUpToTag(pixel_data, {pixel_data})) return -1;
  return static_cast<int64_t>(reader.GetStreamCurrentPosition());
}

}  // namespace

void set_dicom_options(const DicomOptions& opt) { g_options = opt; }
const DicomOptions& dicom_options() { return g_options; }

bool is_dicom_path(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const size_t dot = name.find_last_of('.');
  if (dot != std::string::npos && dot > 0) {
    const std::string ext = lower(name.substr(dot));
    return ext == ".dcm" || ext == ".dicom";
  }
  // No extension: the PS3.10 preamble (128 bytes) and "DICM".
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char b[132];
  const bool ok = std::fread(b, 1, sizeof b, f) == sizeof b && std::memcmp(b + 128, "DICM", 4) == 0;
  std::fclose(f);
  return ok;
}

namespace {

bool read_dicom_info_here(const std::string& path, DicomInfo* info, std::string* error) {
  quiet_gdcm();
  gdcm::Reader reader;
  reader.SetFileName(path.c_str());
  if (!reader.ReadUpToTag(gdcm::Tag(0x7fe0, 0x0010))) {
    *error = "not a DICOM file GDCM can read";
    return false;
  }
  *info = DicomInfo{};
  read_info(reader.GetFile(), info);
  return true;
}

}  // namespace

bool read_dicom_stored(const std::string& path, const DicomOptions& opt, std::vector<int32_t>* stored_out,
                       DicomInfo* info, GreyPipeline* pipe_out, std::string* error) {
  *info = DicomInfo{};
  quiet_gdcm();
  gdcm::ImageReader reader;
  reader.SetFileName(path.c_str());
  if (!reader.Read()) {
    *error = "not a DICOM image GDCM can read (damaged, truncated, or not DICOM)";
    return false;
  }
  const gdcm::File& file = reader.GetFile();
  const gdcm::DataSet& ds = file.GetDataSet();
  read_info(file, info);
  const gdcm::Image& image = reader.GetImage();
  const gdcm::PixelFormat pf = image.GetPixelFormat();
  const unsigned* dims = image.GetDimensions();
  info->columns = static_cast<int>(dims[0]);
  info->rows = static_cast<int>(dims[1]);
  info->samples_per_pixel = pf.GetSamplesPerPixel();
  info->bits_allocated = pf.GetBitsAllocated();
  info->bits_stored = pf.GetBitsStored();
  info->is_signed = pf.GetPixelRepresentation() == 1;
  if (image.GetNumberOfDimensions() > 2 && dims[2] > 1) info->frames = static_cast<int>(dims[2]);
  if (info->frames > 1) {
    *error = "multi-frame image (" + std::to_string(info->frames) + " frames): expected one frame";
    return false;
  }
  if (info->photometric != "MONOCHROME1" && info->photometric != "MONOCHROME2") {
    *error = "colour or unsupported Photometric Interpretation '" + info->photometric +
             "': expected MONOCHROME1 or MONOCHROME2 (a grey-scale X-ray)";
    return false;
  }
  if (info->samples_per_pixel != 1) {
    *error = "Samples per Pixel is " + std::to_string(info->samples_per_pixel) + ", expected 1";
    return false;
  }
  if (info->bits_allocated != 8 && info->bits_allocated != 16) {
    *error = "Bits Allocated is " + std::to_string(info->bits_allocated) + ", expected 8 or 16";
    return false;
  }
  if (info->bits_stored < 1 || info->bits_stored > info->bits_allocated ||
      pf.GetHighBit() != info->bits_stored - 1) {
    *error = "Bits Stored " + std::to_string(info->bits_stored) + " with High Bit " + std::to_string(pf.GetHighBit()) +
             ": expected 1 to " + std::to_string(info->bits_allocated) + " bits with High Bit = Bits Stored - 1";
    return false;
  }
  if (info->rows <= 0 || info->columns <= 0) {
    *error = "image of " + std::to_string(info->columns) + " x " + std::to_string(info->rows) + " pixels";
    return false;
  }
  const int64_t pixels = int64_t(info->rows) * info->columns;
  if (pixels > max_image_pixels()) {
    *error = std::to_string(info->columns) + " x " + std::to_string(info->rows) + " pixels, more than the limit of " +
             std::to_string(max_image_pixels()) + " (--max-image-pixels)";
    return false;
  }
  const bool big_endian = file.GetHeader().GetDataSetTransferSyntax().GetSwapCode() == gdcm::SwapCode::BigEndian;
  GreyPipeline& pipe = *pipe_out;
  pipe = GreyPipeline{};
  const std::string why = choose_pipeline(ds, big_endian, info->is_signed, info->photometric, opt, &pipe, &info->voi);
  if (!why.empty()) {
    *error = why;
    return false;
  }
  // GDCM decompresses to native-endian words of Bits Allocated (byte-swapping big-endian data).
  const size_t bytes_per = static_cast<size_t>(info->bits_allocated / 8);
  // A file cut short in its native pixel data is read by GDCM as far as it goes ("use at own risk") and
  // the rest left as zeros: refused here by where the data would end. (A deflated file's offsets are
  // in the inflated stream; cut short, it fails to inflate.)
  const gdcm::TransferSyntax& ts = image.GetTransferSyntax();
  if (!ts.IsEncapsulated() && ts != gdcm::TransferSyntax::DeflatedExplicitVRLittleEndian) {
    const size_t need = static_cast<size_t>(pixels) * bytes_per;
    const int64_t start = pixel_data_offset(path);
    std::error_code ec;
    const int64_t size = static_cast<int64_t>(std::filesystem::file_size(path, ec));
    if (start < 0 || ec || start + static_cast<int64_t>(need) > size) {
      *error = "pixel data could not be decoded: the file ends " +
               std::to_string(start < 0 || ec ? 0 : std::max<int64_t>(0, start + int64_t(need) - size)) +
               " bytes before the " + std::to_string(need) + " bytes of " + std::to_string(info->columns) + " x " +
               std::to_string(info->rows) + " pixels do (a truncated file)";
      return false;
    }
  }
  std::vector<char> buffer(image.GetBufferLength());
  if (buffer.size() < static_cast<size_t>(pixels) * bytes_per || !image.GetBuffer(buffer.data())) {
    *error = "pixel data could not be decoded (transfer syntax " + info->transfer_syntax + ")";
    return false;
  }
  std::vector<int32_t>& stored = *stored_out;
  stored.resize(static_cast<size_t>(pixels));
  for (size_t i = 0; i < stored.size(); ++i) {
    uint32_t word = 0;
    if (bytes_per == 1) {
      word = static_cast<uint8_t>(buffer[i]);
    } else {
      uint16_t w;
      std::memcpy(&w, buffer.data() + 2 * i, 2);
      word = w;
    }
    stored[i] = stored_value(word, info->bits_stored, info->is_signed);
  }
  return true;
}

namespace {

bool decode_dicom_here(const std::string& path, const DicomOptions& opt, GreyImage* out, DicomInfo* info,
                       std::string* error) {
  thread_local std::vector<int32_t> stored;  // reused: one image a call on each prepare thread
  GreyPipeline pipe;
  if (!read_dicom_stored(path, opt, &stored, info, &pipe, error)) return false;
  out->width = info->columns;
  out->height = info->rows;
  out->pixels.resize(stored.size());
  render_grey(stored.data(), stored.size(), pipe, out->pixels.data());
  return true;
}

// What an isolated decode sends back through its pipe (io/isolated_read.h): a refusal ('0' and the
// reason) or the header and the image ('1', then length-prefixed fields).
struct Wire {
  std::string bytes;
  size_t at = 0;
  void put(uint64_t v) { bytes.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void put(const std::string& v) { put(uint64_t(v.size())), bytes += v; }
  uint64_t get() {
    if (at + 8 > bytes.size()) CXR_FAIL("a short reply");
    uint64_t v;
    std::memcpy(&v, bytes.data() + at, 8);
    at += 8;
    return v;
  }
  std::string get_string() {
    const uint64_t n = get();
    if (n > bytes.size() - at) CXR_FAIL("a short reply");
    at += n;
    return bytes.substr(at - n, n);
  }
};

void put_info(Wire& w, const DicomInfo& i) {
  for (const std::string* s : {&i.transfer_syntax, &i.sop_instance_uid, &i.patient_id, &i.view_position,
                               &i.photometric, &i.voi})
    w.put(*s);
  for (int64_t v : {int64_t(i.burned_in_annotation), int64_t(i.rows), int64_t(i.columns), int64_t(i.frames),
                    int64_t(i.samples_per_pixel), int64_t(i.bits_allocated), int64_t(i.bits_stored),
                    int64_t(i.is_signed)})
    w.put(uint64_t(v));
}

void get_info(Wire& w, DicomInfo* i) {
  for (std::string* s : {&i->transfer_syntax, &i->sop_instance_uid, &i->patient_id, &i->view_position,
                         &i->photometric, &i->voi})
    *s = w.get_string();
  i->burned_in_annotation = w.get() != 0;
  for (int* v : {&i->rows, &i->columns, &i->frames, &i->samples_per_pixel, &i->bits_allocated, &i->bits_stored})
    *v = int(w.get());
  i->is_signed = w.get() != 0;
}

// Runs a GDCM read in a child (Note [untrusted files]): GDCM 3.0.21 aborts on failed assertions for
// some damaged headers. `image` is null for a header-only read.
bool isolated_gdcm_read(const std::string& path, DicomInfo* info, GreyImage* image, std::string* error,
                        const std::function<bool(DicomInfo*, GreyImage*, std::string*)>& read) {
  Wire w;
  try {
    w.bytes = run_isolated(path, "GDCM", [&] {
      Wire out;
      DicomInfo i;
      GreyImage img;
      std::string why;
      if (!read(&i, image ? &img : nullptr, &why)) return "0" + why;
      out.bytes = "1";
      put_info(out, i);
      if (image) out.put(uint64_t(img.width)), out.put(uint64_t(img.height)), out.put(std::string(img.pixels.begin(), img.pixels.end()));
      return out.bytes;
    });
  } catch (const Error& e) {
    // A crash or a hang is this file's failure, reported as decoding's own refusals are: the
    // commands go on with the other files (the convention of cp and grep).
    const std::string m = e.what(), prefix = path + ": ";
    *error = m.compare(0, prefix.size(), prefix) == 0 ? m.substr(prefix.size()) : m;
    return false;
  }
  // The reply is checked before anything is sized by it: a child whose memory went wrong must not
  // make the parent read or allocate out of bounds.
  try {
    if (w.bytes.empty()) CXR_FAIL("an empty reply");
    if (w.bytes[0] == '0') {
      *error = w.bytes.substr(1);
      return false;
    }
    w.at = 1;
    get_info(w, info);
    if (image) {
      const uint64_t width = w.get(), height = w.get();
      const std::string px = w.get_string();
      if (width == 0 || height == 0 || width > (1u << 20) || height > (1u << 20) || px.size() != width * height)
        CXR_FAIL("an image of ", width, " x ", height, " with ", px.size(), " pixels");
      image->width = int(width);
      image->height = int(height);
      image->pixels.assign(px.begin(), px.end());
    }
    if (w.at != w.bytes.size()) CXR_FAIL(w.bytes.size() - w.at, " bytes too many");
  } catch (const Error& e) {
    *error = std::string("the child process decoding it replied with ") + e.what();
    return false;
  }
  return true;
}

}  // namespace

bool read_dicom_info(const std::string& path, DicomInfo* info, std::string* error) {
  if (isolated_depth > 0 || !isolated_reads_enabled()) return read_dicom_info_here(path, info, error);
  return isolated_gdcm_read(path, info, nullptr, error, [&](DicomInfo* i, GreyImage*, std::string* why) {
    return read_dicom_info_here(path, i, why);
  });
}

bool decode_dicom(const std::string& path, const DicomOptions& opt, GreyImage* out, DicomInfo* info,
                  std::string* error) {
  DicomInfo local;
  if (!info) info = &local;
  if (isolated_depth > 0 || !isolated_reads_enabled()) return decode_dicom_here(path, opt, out, info, error);
  return isolated_gdcm_read(path, info, out, error, [&](DicomInfo* i, GreyImage* img, std::string* why) {
    return decode_dicom_here(path, opt, img, i, why);
  });
}

}  // namespace cxr::io
