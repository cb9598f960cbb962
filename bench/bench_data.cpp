// Data pipeline throughput: `cxr prepare` on the real 1024x1024 NIH PNGs (images per second per
// core; target >= 120) and the loader from a packed 320x320 file to normalised batches (target
// >= 5,000 images/s). Real images: NIH ChestX-ray14 (https://nihcc.app.box.com/v/ChestXray-NIHCC;
// Wang et al., CVPR 2017; data provided by the NIH Clinical Center), read from ../shared/data/nih-1024
// (or $CXR_SHARED_DIR/data/nih-1024).
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include <gdcmImage.h>
#include <gdcmImageChangeTransferSyntax.h>
#include <gdcmImageWriter.h>
#include <gdcmTrace.h>

#include <cstring>

#include "io/csv.h"
#include "io/digest.h"
#include "io/image.h"
#include "io/isolated_read.h"
#include "io/loader.h"
#include "io/packed.h"
#include "io/prepare.h"
#include "io/synth.h"

namespace {

namespace fs = std::filesystem;
using namespace cxr::io;

std::string shared_data(const std::string& rel) {
  const char* env = std::getenv("CXR_SHARED_DIR");
  // CXR_SHARED_DIR: <source>/../shared, set by bench/CMakeLists.txt (__FILE__ is relative to the source
  // tree under -fmacro-prefix-map, so it cannot locate the data).
  const fs::path base = env ? fs::path(env) : fs::path(CXR_SHARED_DIR);
  const fs::path p = base / "data" / rel;
  return fs::exists(p) ? p.string() : std::string();
}

// CPU seconds of the whole process (all threads): with images, a rate per CPU-second that does not
// depend on how busy the machine is (unlike the wall-clock rate).
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

void cpu_counter(benchmark::State& state, double images, double cpu0) {
  const double cpu = process_cpu_seconds() - cpu0;
  state.counters["images/cpu-s"] = cpu > 0 ? images / cpu : 0.0;
}

std::string scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("cxr_bench_" + std::to_string(getpid()));
  fs::create_directories(d);
  return (d / name).string();
}

// Decode + resize of one real 1024x1024 PNG (single thread).
void BM_DecodeResize1024(benchmark::State& state) {
  const std::string dir = shared_data("nih-1024");
  if (dir.empty()) return state.SkipWithError("../shared/data/nih-1024 absent");
  std::vector<std::string> files;
  for (auto& [name, path] : scan_images(dir))
    if (path.size() > 4 && path.substr(path.size() - 4) == ".png") files.push_back(path);
  const int S = static_cast<int>(state.range(0));
  std::vector<uint8_t> out(S * S);
  size_t k = 0;
  for (auto _ : state) {
    GreyImage img;
    std::string err;
    if (!decode_grey(files[k++ % files.size()], &img, &err)) return state.SkipWithError(err.c_str());
    resize_grey(out.data(), S, S, img.pixels.data(), img.width, img.height, ResizeFilter::Mitchell, 1.5);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DecodeResize1024)->Arg(320)->Unit(benchmark::kMillisecond)->UseRealTime();

// The parts of the above: decoding alone, and resizing a decoded image alone (range(0): reducing
// gap x 10; 0 = direct Mitchell resampling of the full image).
std::vector<std::string> nih1024_files() {
  std::vector<std::string> files;
  const std::string dir = shared_data("nih-1024");
  if (dir.empty()) return files;
  for (auto& [name, path] : scan_images(dir))
    if (path.size() > 4 && path.substr(path.size() - 4) == ".png") files.push_back(path);
  return files;
}

void BM_Decode1024(benchmark::State& state) {
  const auto files = nih1024_files();
  if (files.empty()) return state.SkipWithError("../shared/data/nih-1024 absent");
  size_t k = 0;
  for (auto _ : state) {
    GreyImage img;
    std::string err;
    if (!decode_grey(files[k++ % files.size()], &img, &err)) return state.SkipWithError(err.c_str());
    benchmark::DoNotOptimize(img.pixels.data());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Decode1024)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Resize1024(benchmark::State& state) {
  const auto files = nih1024_files();
  if (files.empty()) return state.SkipWithError("../shared/data/nih-1024 absent");
  GreyImage img;
  std::string err;
  if (!decode_grey(files[0], &img, &err)) return state.SkipWithError(err.c_str());
  const int S = 320;
  std::vector<uint8_t> out(S * S);
  const double gap = static_cast<double>(state.range(0)) / 10.0;
  for (auto _ : state) {
    resize_grey(out.data(), S, S, img.pixels.data(), img.width, img.height, ResizeFilter::Mitchell, gap);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Resize1024)->Arg(0)->Arg(15)->Unit(benchmark::kMillisecond)->UseRealTime();

// The whole `cxr prepare` (CSV, scan, decode, resize, HDF5 write) of the 100 images, N threads.
void BM_Prepare1024(benchmark::State& state) {
  const std::string dir = shared_data("nih-1024");
  if (dir.empty()) return state.SkipWithError("../shared/data/nih-1024 absent");
  const std::string labels = shared_data("nih-labels/Data_Entry_2017_v2020.csv");
  if (labels.empty()) return state.SkipWithError("../shared/data/nih-labels absent");
  // nih-1024 has no CSV of its own: the official rows of its 100 images (missing ones are skipped).
  static std::string csv;
  if (csv.empty()) {
    std::set<std::string> have;
    for (auto& [name, path] : scan_images(dir)) have.insert(name);
    std::vector<LabelRow> rows;
    for (auto& r : read_label_csv(labels))
      if (have.count(r.image)) rows.push_back(r);
    csv = scratch("nih1024.csv");
    write_label_csv(csv, rows);
  }
  PrepareOptions o;
  o.csv = csv;
  o.images_dir = dir;
  o.size = 320;
  o.threads = static_cast<int>(state.range(0));
  o.quiet = true;
  int64_t images = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    o.out = scratch("prepare.h5");
    fs::remove(o.out);
    images += prepare_dataset(o).written;
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(images), benchmark::Counter::kIsRate);
  state.counters["images/s/core"] =
      benchmark::Counter(static_cast<double>(images) / static_cast<double>(o.threads), benchmark::Counter::kIsRate);
  cpu_counter(state, static_cast<double>(images), cpu0);
}
BENCHMARK(BM_Prepare1024)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);

// Loader: packed 320x320 file (1,024 synthetic images) -> shuffled, flipped, normalised float
// batches of 32.
void BM_Loader320(benchmark::State& state) {
  static std::string path;
  const int S = 320;
  if (path.empty()) {
    path = scratch("loader.h5");
    SynthOptions so;
    so.patients = 400, so.size = S;
    SynthResult r = synth_labels(so);
    r.rows.resize(std::min<size_t>(r.rows.size(), 1024));
    std::vector<Split> split(r.rows.size(), Split::Train);
    PackedMeta meta;
    meta.image_size = S;
    PackedWriter w(path, r.rows, split, meta);
    for (size_t i = 0; i < r.rows.size(); ++i) w.write_image(i, synth_image(r.rows[i], S, 0, nullptr).data());
    w.finish();
  }
  PackedDataset d(path);
  LoaderOptions o = LoaderOptions::train(32, 1);
  o.norm.mode = state.range(0) ? NormMode::Sample : NormMode::ImageNet;
  o.normalize = true;
  o.threads = static_cast<int>(state.range(1));
  o.verify_checksums = state.range(2) != 0;
  state.SetLabel(o.verify_checksums ? "checksums verified" : "checksums not verified");
  Loader l(d, o);
  int64_t images = 0, epoch = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    l.start_epoch(epoch++);
    while (const Batch* b = l.next()) images += b->size;
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(images), benchmark::Counter::kIsRate);
  cpu_counter(state, static_cast<double>(images), cpu0);
}
// Args: (sample normalisation 1 / imagenet 0, loader threads (0 = all cores), checksums verified 1 / not 0).
// Checked and unchecked alternate, so that the machine's noise falls on both alike.
BENCHMARK(BM_Loader320)
    ->Args({1, 0, 1})->Args({1, 0, 0})->Args({1, 0, 1})->Args({1, 0, 0})
    ->Args({0, 0, 1})->Args({1, 1, 1})->Args({1, 1, 0})->Args({1, 1, 1})->Args({1, 1, 0})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// The checksum of one packed 320x320 image (io/digest.h), as the loader computes it per image read.
void BM_Digest320(benchmark::State& state) {
  std::vector<uint8_t> img(320 * 320);
  for (size_t i = 0; i < img.size(); ++i) img[i] = uint8_t(i * 131 + (i >> 7));
  uint64_t sink = 0;
  for (auto _ : state) sink ^= digest64(img.data(), img.size());
  benchmark::DoNotOptimize(sink);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(img.size()));
}
BENCHMARK(BM_Digest320)->Unit(benchmark::kMicrosecond);

// ---- DICOM: decode + VOI + resize to 320 of a large 12-bit image, beside PNG ------------------------
//
// A 2,500 x 3,000 (width x height) 12-bit image, the size of a CR/DX chest film: a real NIH 1024 PNG
// resized up, times 16, plus a fixed pattern in the low 4 bits (so that codecs see 12 real bits),
// written by GDCM's writer uncompressed (explicit VR little endian), as JPEG 2000 lossless and as
// JPEG lossless (process 14, selection value 1), with a 12-bit window; and the same picture as an 8-bit
// PNG (stb_image_write, zlib level 8) for comparison. range(0): 0 PNG, 1 uncompressed, 2 J2K, 3 JPEG-LL;
// range(1): 1 decodes each DICOM in a child process as the tools do (Note [untrusted files]: the
// fork and the pixels sent back through a pipe), 0 in process, side by side.
const char* kDicomKinds[] = {"png8", "dicom-uncompressed-12bit", "dicom-j2k-lossless", "dicom-jpeg-lossless-sv1"};

std::string large_image(int kind) {
  static std::vector<std::string> made;
  if (!made.empty()) return made[size_t(kind)];
  const auto files = nih1024_files();
  if (files.empty()) return "";
  gdcm::Trace::SetWarning(false);  // "No PhotometricInterpretation found" while the writer builds the file
  GreyImage src;
  std::string err;
  if (!decode_grey(files[0], &src, &err)) return "";
  const int W = 2500, H = 3000;
  std::vector<uint8_t> p8(size_t(W) * H);
  resize_grey(p8.data(), W, H, src.pixels.data(), src.width, src.height);
  std::vector<uint16_t> s12(p8.size());
  for (int i = 0; i < H; ++i)
    for (int j = 0; j < W; ++j) s12[size_t(i) * W + j] = uint16_t(p8[size_t(i) * W + j] * 16 + (i * 7 + j * 13) % 16);
  made.push_back(scratch("large.png"));
  write_png(made[0], p8.data(), W, H, 1);
  const gdcm::TransferSyntax::TSType syntaxes[] = {gdcm::TransferSyntax::ExplicitVRLittleEndian,
                                                   gdcm::TransferSyntax::JPEG2000Lossless,
                                                   gdcm::TransferSyntax::JPEGLosslessProcess14_1};
  for (int k = 0; k < 3; ++k) {
    gdcm::SmartPointer<gdcm::Image> im = new gdcm::Image;
    im->SetNumberOfDimensions(2);
    im->SetDimension(0, W);
    im->SetDimension(1, H);
    gdcm::PixelFormat pf(gdcm::PixelFormat::UINT16);
    pf.SetBitsStored(12);
    pf.SetHighBit(11);
    im->SetPixelFormat(pf);
    im->SetPhotometricInterpretation(gdcm::PhotometricInterpretation::MONOCHROME2);
    im->SetTransferSyntax(gdcm::TransferSyntax::ExplicitVRLittleEndian);
    gdcm::DataElement pixels(gdcm::Tag(0x7fe0, 0x0010));
    pixels.SetByteValue(reinterpret_cast<const char*>(s12.data()), uint32_t(s12.size() * 2));
    im->SetDataElement(pixels);
    gdcm::ImageChangeTransferSyntax change;
    change.SetTransferSyntax(syntaxes[k]);
    change.SetInput(*im);
    if (!change.Change()) return "";
    gdcm::ImageWriter w;
    w.SetImage(change.GetOutput());
    gdcm::DataSet& ds = w.GetFile().GetDataSet();
    for (auto [e, v] : {std::pair<uint16_t, const char*>{0x1050, "2048"}, {0x1051, "4096"}}) {
      gdcm::DataElement de(gdcm::Tag(0x0028, e));
      de.SetVR(gdcm::VR::DS);
      de.SetByteValue(v, uint32_t(std::strlen(v)));
      ds.Replace(de);
    }
    made.push_back(scratch(std::string(kDicomKinds[k + 1]) + ".dcm"));
    w.SetFileName(made.back().c_str());
    if (!w.Write()) return "";
  }
  return made[size_t(kind)];
}

void BM_DecodeVoiResizeLarge(benchmark::State& state) {
  const std::string file = large_image(int(state.range(0)));
  if (file.empty()) return state.SkipWithError("../shared/data/nih-1024 absent, or GDCM could not write the image");
  state.SetLabel(std::string(kDicomKinds[state.range(0)]) + ", " + std::to_string(fs::file_size(file) >> 10) + " KiB" +
                 (state.range(1) ? ", isolated" : ", in process"));
  set_isolated_reads(state.range(1) != 0);
  const int S = 320;
  std::vector<uint8_t> out(S * S);
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    GreyImage img;
    std::string err;
    if (!decode_grey(file, &img, &err)) return state.SkipWithError(err.c_str());
    resize_grey(out.data(), S, S, img.pixels.data(), img.width, img.height);  // as cxr prepare: direct Mitchell
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  cpu_counter(state, static_cast<double>(state.iterations()), cpu0);
  set_isolated_reads(true);
}
BENCHMARK(BM_DecodeVoiResizeLarge)->ArgsProduct({{0, 1, 2, 3}, {1, 0}})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
