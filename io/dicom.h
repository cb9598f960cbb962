// DICOM input: single-frame grey-scale X-rays (DX, CR, secondary captures) decoded with GDCM and
// rendered to the 8-bit image a radiologist would see, by the grey-scale pipeline of DICOM PS3.3 C.11:
//
//   stored value --(mask to Bits Stored, sign-extend)--> modality LUT --> VOI LUT --> presentation --> 8 bits
//
// GDCM (Debian's libgdcm) decodes every transfer syntax (implicit/explicit VR little endian, explicit
// big endian, deflated, RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000); the rendering
// below is ours, one function per step of the standard, each tested against the standard's formula
// (tests/test_dicom.cpp) and the whole against pydicom and DCMTK's dcm2pnm on the same files.
// Nothing here writes or logs identifying tags: DicomInfo carries only what the pipeline needs
// (the Patient ID, for patient-wise splits, is the one identifier, and callers decide how to store it).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/image.h"

namespace cxr::io {

// ---- The rendering steps (PS3.3 C.11), independent of any file format ----

// A LUT of the Modality LUT Sequence (0028,3000) or the VOI LUT Sequence (0028,3010): LUT Descriptor
// (0028,3002) = (entries, first stored value mapped, bits per entry), entries 0 meaning 65536.
// Values below `first` map to data[0], above the last entry to data.back() (C.11.1.1.1, C.11.2.1.1).
struct DicomLut {
  int64_t first = 0;
  int bits = 16;
  std::vector<uint16_t> data;
  double lookup(double x) const;
};

enum class VoiFunction { Linear, LinearExact, Sigmoid };

// The window functions of C.11.2.1.2 (LINEAR), C.11.2.1.3.1 (SIGMOID) and C.11.2.1.3.2 (LINEAR_EXACT),
// exactly as the standard writes them, output in [ymin, ymax].
double voi_window(VoiFunction f, double x, double center, double width, double ymin, double ymax);

// What the pipeline applies to one image; decode_dicom() fills it from the file.
struct GreyPipeline {
  // Modality: the LUT when present (it replaces rescale), else slope * stored + intercept (C.11.1).
  bool modality_lut = false;
  DicomLut modality;
  double slope = 1.0, intercept = 0.0;
  // VOI (C.11.2): a window, a VOI LUT, or (with neither in the file) the image's own min..max of the
  // modality output stretched linearly to the output range.
  enum class Voi { Window, Lut, MinMax } voi = Voi::MinMax;
  VoiFunction function = VoiFunction::Linear;
  double center = 0, width = 0;
  DicomLut voi_lut;
  // Presentation (C.11.6, C.7.6.3.1.2): inverted for MONOCHROME1 (minimum is white) or an INVERSE
  // Presentation LUT Shape; a MONOCHROME1 image with INVERSE (what the DX Image Module requires of it)
  // is inverted once, not twice.
  bool invert = false;
};

// Renders stored values (already masked to Bits Stored and sign-extended) to 8 bits: the pipeline's
// output in [0, 255] rounded half up. Values are at most 16 bits, so this evaluates the pipeline once
// per distinct stored value (a table) and maps the image through it.
void render_grey(const int32_t* stored, size_t n, const GreyPipeline& p, uint8_t* out);

// The stored value of a pixel word (Image Pixel Module: Bits Stored, High Bit = Bits Stored - 1): the low
// `bits_stored` bits, sign-extended when signed. Bits above are ignored (overlay planes or garbage in
// old files).
inline int32_t stored_value(uint32_t word, int bits_stored, bool is_signed) {
  const uint32_t mask = bits_stored >= 32 ? 0xffffffffu : (1u << bits_stored) - 1u;
  uint32_t v = word & mask;
  if (is_signed && (v >> (bits_stored - 1)) & 1u) v |= ~mask;
  return static_cast<int32_t>(v);
}

// ---- Files ----

struct DicomOptions {
  int window = 1;  // 1-based: which Window Center/Width pair (or, without windows, VOI LUT) to apply
};

// What decode_dicom() and read_dicom_info() report about a file. No patient name, birth date or any
// other identifying tag is read.
struct DicomInfo {
  std::string transfer_syntax;  // UID
  std::string sop_instance_uid;
  std::string patient_id;       // (0010,0020) as stored, trailing spaces removed; may be empty
  std::string view_position;    // (0018,5101), e.g. "PA", "AP", "LL"; may be empty
  std::string photometric;      // "MONOCHROME2", ...
  bool burned_in_annotation = false;  // (0028,0301) is YES
  int rows = 0, columns = 0, frames = 1, samples_per_pixel = 1;
  int bits_allocated = 0, bits_stored = 0;
  bool is_signed = false;
  std::string voi;  // the VOI transform applied, e.g. "window 1 of 3 (center 2048, width 4096, LINEAR)"
};

// True for names ending in .dcm or .dicom (any case), and for files without an extension whose 128-byte
// preamble is followed by "DICM" (PS3.10 7.1).
bool is_dicom_path(const std::string& path);

// Reads the header only (up to the pixel data). False and *error on failure.
bool read_dicom_info(const std::string& path, DicomInfo* info, std::string* error);

// Decodes and renders a file. Refused with *error: multi-frame images, colour photometric
// interpretations, Bits Allocated other than 8 or 16, High Bit != Bits Stored - 1, more pixels than
// max_image_pixels(), a window or LUT the standard does not allow, and anything GDCM cannot decode.
bool decode_dicom(const std::string& path, const DicomOptions& opt, GreyImage* out, DicomInfo* info,
                  std::string* error);

// The steps of decode_dicom() before rendering: the stored values (masked and sign-extended, row-major)
// and the pipeline the file asks for. For tests and tools that need the values themselves.
bool read_dicom_stored(const std::string& path, const DicomOptions& opt, std::vector<int32_t>* stored,
                       DicomInfo* info, GreyPipeline* pipe, std::string* error);

// The process-wide DICOM options (from `--dicom-window`), set once before decoding starts, used where
// images are decoded by path (decode_grey() dispatches .dcm files here).
void set_dicom_options(const DicomOptions& opt);
const DicomOptions& dicom_options();

}  // namespace cxr::io
