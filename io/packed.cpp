#include "io/packed.h"

#include <hdf5.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>

#include "engine/error.h"
#include "io/digest.h"
#include "io/fault.h"
#include "io/hdf5.h"
#include "io/isolated_read.h"

namespace cxr::io {
namespace {

using Hid = h5::Handle;

// HDF5's innermost message carries the system's reason (a full disk: "errno = 27, error message =
// 'File too large'"), shortened to one line by h5::last_error().
Hid checked(hid_t id, herr_t (*close)(hid_t), const std::string& what, const std::string& file) {
  if (id < 0) throw Error(file + ": cannot " + what + ": " + h5::last_error());
  return Hid(id, close);
}
void check(herr_t e, const std::string& what, const std::string& file) {
  if (e < 0) throw Error(file + ": cannot " + what + ": " + h5::last_error());
}

Hid make_space(std::initializer_list<hsize_t> dims) {
  std::vector<hsize_t> d(dims);
  return Hid(H5Screate_simple(static_cast<int>(d.size()), d.data(), nullptr), H5Sclose);
}

Hid string_type(size_t len) {
  Hid t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t, std::max<size_t>(len, 1));
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  return t;
}

std::vector<char> pack_strings(const std::vector<std::string>& v, size_t* len) {
  *len = 1;
  for (auto& s : v) *len = std::max(*len, s.size());
  std::vector<char> buf(v.size() * *len, 0);
  for (size_t i = 0; i < v.size(); ++i) std::memcpy(buf.data() + i * *len, v[i].data(), v[i].size());
  return buf;
}

void write_strings(hid_t file, const char* name, const std::vector<std::string>& v, const std::string& path) {
  size_t len = 0;
  std::vector<char> buf = pack_strings(v, &len);
  Hid t = string_type(len);
  Hid sp = make_space({static_cast<hsize_t>(v.size())});
  Hid d = checked(H5Dcreate2(file, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                  std::string("create ") + name, path);
  if (!v.empty()) check(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), std::string("write ") + name, path);
}

// Strings through the one reader (io/hdf5.h), with errors that name the file.
std::vector<std::string> read_strings(hid_t obj, const char* name, bool attribute, const std::string& path) {
  try {
    return attribute ? h5::read_strings_attr(obj, name) : h5::read_strings_dataset(obj, name);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

void write_string_attr(hid_t obj, const char* name, const std::string& value) {
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  Hid t = string_type(value.size());
  Hid sp(H5Screate(H5S_SCALAR), H5Sclose);
  Hid a(H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  std::vector<char> buf(std::max<size_t>(value.size(), 1), 0);
  std::memcpy(buf.data(), value.data(), value.size());
  H5Awrite(a, t, buf.data());
}

void write_strings_attr(hid_t obj, const char* name, const std::vector<std::string>& v) {
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  size_t len = 0;
  std::vector<char> buf = pack_strings(v, &len);
  Hid t = string_type(len);
  Hid sp = make_space({static_cast<hsize_t>(v.size())});
  Hid a(H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  H5Awrite(a, t, buf.data());
}

template <typename T>
void write_num_attr(hid_t obj, const char* name, hid_t type, const T* v, hsize_t n) {
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  Hid sp = n == 1 ? Hid(H5Screate(H5S_SCALAR), H5Sclose) : make_space({n});
  Hid a(H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  H5Awrite(a, type, v);
}

template <typename T>
bool read_num_attr(hid_t obj, const char* name, hid_t type, T* v, hsize_t n) {
  if (H5Aexists(obj, name) <= 0) return false;
  Hid a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  Hid sp(H5Aget_space(a), H5Sclose);
  if (static_cast<hsize_t>(H5Sget_simple_extent_npoints(sp)) != n) return false;
  return H5Aread(a, type, v) >= 0;
}

// Writes a numeric dataset; with_digest: and its checksum (io/digest.h) over the values' bytes.
template <typename T>
void write_array(hid_t file, const char* name, hid_t type, const std::vector<T>& v, std::initializer_list<hsize_t> dims,
                 const std::string& path, bool with_digest = false) {
  Hid sp = make_space(dims);
  Hid d = checked(H5Dcreate2(file, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                  std::string("create ") + name, path);
  if (!v.empty()) check(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), std::string("write ") + name, path);
  if (with_digest) h5::write_digest(d, digest64(v.data(), v.size() * sizeof(T)));
}

template <typename T>
std::vector<T> read_array(hid_t file, const char* name, hid_t type, const std::string& path, hssize_t expect) {
  Hid d = checked(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose, std::string("open ") + name, path);
  Hid sp(H5Dget_space(d), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(sp);
  if (expect >= 0 && n != expect)
    throw Error(path + ": dataset " + name + " has " + std::to_string(n) + " elements, expected " +
                std::to_string(expect));
  std::vector<T> v(static_cast<size_t>(n));
  if (n > 0) check(H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), std::string("read ") + name, path);
  try {
    h5::check_digest(d, name, v.data(), v.size() * sizeof(T));
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  return v;
}

uint64_t fingerprint(const std::vector<LabelRow>& rows, const std::vector<Split>& split, int size) {
  uint64_t h = mix64(static_cast<uint64_t>(size) + 0x1234);
  for (size_t i = 0; i < rows.size(); ++i) {
    for (char ch : rows[i].image) h = mix64(h ^ static_cast<uint8_t>(ch));
    h = mix64(h ^ (static_cast<uint64_t>(split[i]) << 8));
    for (uint8_t l : rows[i].labels) h = mix64(h ^ l);
  }
  return h;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

// ---- writer ----------------------------------------------------------------------------------------

struct PackedWriter::Impl {
  h5::Silence quiet;  // errors are thrown as one line (check above), not printed as HDF5's stack; last
  Hid file, images, done;
  int size = 0;
  std::vector<Split> split;
  std::vector<uint64_t> digests;  // /image_xxh3: each written image's checksum
};

PackedWriter::PackedWriter(const std::string& path, const std::vector<LabelRow>& rows, const std::vector<Split>& split,
                           const PackedMeta& meta)
    : impl_(std::make_unique<Impl>()), path_(path), partial_(path + ".partial") {
  CXR_CHECK(rows.size() == split.size(), "rows ", rows.size(), " split ", split.size());
  CXR_CHECK(meta.image_size > 0, "image size ", meta.image_size);
  const int S = meta.image_size;
  const hsize_t N = rows.size();
  impl_->size = S;
  impl_->split = split;
  const uint64_t fp = fingerprint(rows, split, S);
  done_.assign(N, 0);

  // Resume when a partial file made from the same entries exists.
  if (std::filesystem::exists(partial_)) {
    hid_t f = -1;
    H5E_BEGIN_TRY { f = H5Fopen(partial_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT); }
    H5E_END_TRY;
    if (f >= 0) {
      Hid file(f, H5Fclose);
      uint64_t old = 0;
      int old_size = 0;
      if (read_num_attr(file, "fingerprint", H5T_NATIVE_UINT64, &old, 1) && old == fp &&
          read_num_attr(file, "image_size", H5T_NATIVE_INT, &old_size, 1) && old_size == S &&
          H5Lexists(file, "/image_xxh3", H5P_DEFAULT) > 0) {  // (a partial file of an older version starts again)
        done_ = read_array<uint8_t>(file, "/done", H5T_NATIVE_UINT8, partial_, static_cast<hssize_t>(N));
        impl_->digests = read_array<uint64_t>(file, "/image_xxh3", H5T_NATIVE_UINT64, partial_, hssize_t(N));
        impl_->images = checked(H5Dopen2(file, "/images", H5P_DEFAULT), H5Dclose, "open /images", partial_);
        impl_->done = checked(H5Dopen2(file, "/done", H5P_DEFAULT), H5Dclose, "open /done", partial_);
        impl_->file = std::move(file);
        resumed_ = true;
        return;
      }
    }
    std::filesystem::remove(partial_);
  }

  impl_->file = checked(H5Fcreate(partial_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, "create",
                        partial_);
  hid_t file = impl_->file;
  {
    Hid sp = make_space({N, static_cast<hsize_t>(S), static_cast<hsize_t>(S)});
    Hid dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    const hsize_t chunk[3] = {1, static_cast<hsize_t>(S), static_cast<hsize_t>(S)};
    if (N > 0) H5Pset_chunk(dcpl, 3, chunk);
    const uint8_t zero = 0;
    H5Pset_fill_value(dcpl, H5T_NATIVE_UINT8, &zero);
    impl_->images = checked(H5Dcreate2(file, "/images", H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose,
                            "create /images", partial_);
  }
  std::vector<uint8_t> labels(N * kNumClasses);
  std::vector<int64_t> pids(N);
  std::vector<std::string> names(N), views(N);
  std::vector<uint8_t> sp8(N);
  for (size_t i = 0; i < N; ++i) {
    std::copy(rows[i].labels.begin(), rows[i].labels.end(), labels.begin() + i * kNumClasses);
    pids[i] = rows[i].patient_id;
    names[i] = rows[i].image;
    views[i] = rows[i].view_position;
    sp8[i] = static_cast<uint8_t>(split[i]);
  }
  write_array(file, "/labels", H5T_STD_U8LE, labels, {N, static_cast<hsize_t>(kNumClasses)}, partial_, true);
  write_array(file, "/patient_ids", H5T_STD_I64LE, pids, {N}, partial_, true);
  write_array(file, "/split", H5T_STD_U8LE, sp8, {N}, partial_, true);
  write_array(file, "/done", H5T_STD_U8LE, done_, {N}, partial_);
  impl_->digests.assign(N, 0);
  write_array(file, "/image_xxh3", H5T_STD_U64LE, impl_->digests, {N}, partial_);
  write_strings(file, "/names", names, partial_);
  write_strings(file, "/view_positions", views, partial_);
  // Text Patient IDs (DICOM): as given, or keyed hashes (PackedMeta::patient_key_hash).
  if (std::any_of(rows.begin(), rows.end(), [](const LabelRow& r) { return !r.patient_key.empty(); })) {
    std::vector<std::string> keys(N);
    for (size_t i = 0; i < N; ++i) keys[i] = rows[i].patient_key;
    write_strings(file, "/patient_keys", keys, partial_);
  }
  impl_->done = checked(H5Dopen2(file, "/done", H5P_DEFAULT), H5Dclose, "open /done", partial_);

  std::vector<std::string> cls(kClassNames.begin(), kClassNames.end());
  write_string_attr(file, "format", kPackedFormat);
  write_strings_attr(file, "class_names", cls);
  write_num_attr(file, "image_size", H5T_NATIVE_INT, &S, 1);
  write_string_attr(file, "command", meta.command);
  write_string_attr(file, "source_csv", meta.source_csv);
  write_string_attr(file, "split_method", meta.split_method);
  write_string_attr(file, "split_lists", meta.split_lists);
  write_string_attr(file, "resize", meta.resize);
  if (!meta.patient_key_hash.empty()) write_string_attr(file, "patient_key_hash", meta.patient_key_hash);
  if (!meta.synthetic.empty()) write_string_attr(file, "synthetic", meta.synthetic);
  write_num_attr(file, "seed", H5T_NATIVE_UINT64, &meta.seed, 1);
  const double ratios[3] = {meta.ratios.train, meta.ratios.val, meta.ratios.test};
  write_num_attr(file, "ratios", H5T_NATIVE_DOUBLE, ratios, 3);
  write_string_attr(file, "created", utc_now());
  write_num_attr(file, "fingerprint", H5T_NATIVE_UINT64, &fp, 1);
  const int complete = 0;
  write_num_attr(file, "complete", H5T_NATIVE_INT, &complete, 1);
  flush();
}

PackedWriter::~PackedWriter() {
  if (impl_ && impl_->file.valid()) {
    try {
      flush();
    } catch (...) {
    }
  }
}

void PackedWriter::write_image(int64_t i, const uint8_t* pixels) {
  CXR_CHECK(i >= 0 && i < size(), "image index ", i, " of ", size());
  const hsize_t S = static_cast<hsize_t>(impl_->size);
  Hid fs(H5Dget_space(impl_->images), H5Sclose);
  const hsize_t start[3] = {static_cast<hsize_t>(i), 0, 0}, count[3] = {1, S, S};
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, nullptr, count, nullptr);
  Hid ms = make_space({1, S, S});
  check(H5Dwrite(impl_->images, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, pixels), "write image", partial_);
  impl_->digests[size_t(i)] = digest64(pixels, size_t(S * S));
  done_[i] = 1;
  fault_point("packed: image written");
}

void PackedWriter::mark_unreadable(int64_t i) {
  CXR_CHECK(i >= 0 && i < size(), "image index ", i, " of ", size());
  done_[i] = 2;
}

void PackedWriter::flush() {
  // Checksums before /done: an image marked done always has its checksum on disk.
  if (!done_.empty()) {
    Hid d = checked(H5Dopen2(impl_->file, "/image_xxh3", H5P_DEFAULT), H5Dclose, "open /image_xxh3", partial_);
    check(H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, impl_->digests.data()), "write /image_xxh3",
          partial_);
    check(H5Dwrite(impl_->done, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, done_.data()), "write /done", partial_);
  }
  check(H5Fflush(impl_->file, H5F_SCOPE_GLOBAL), "flush", partial_);
  fault_point("packed: flushed");
}

void PackedWriter::finish() {
  for (uint8_t d : done_) CXR_CHECK(d != 0, "finish() with images still pending");
  std::vector<uint8_t> sp8(done_.size());
  for (size_t i = 0; i < done_.size(); ++i)
    sp8[i] = done_[i] == 2 ? static_cast<uint8_t>(Split::Excluded) : static_cast<uint8_t>(impl_->split[i]);
  {
    Hid d = checked(H5Dopen2(impl_->file, "/split", H5P_DEFAULT), H5Dclose, "open /split", partial_);
    if (!sp8.empty()) check(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, sp8.data()), "write /split", partial_);
    h5::write_digest(d, digest64(sp8.data(), sp8.size()));
  }
  // An unreadable image's chunk is never written: it reads as the fill value, zeros.
  const std::vector<uint8_t> zeros(size_t(impl_->size) * size_t(impl_->size), 0);
  const uint64_t zero_digest = digest64(zeros.data(), zeros.size());
  for (size_t i = 0; i < done_.size(); ++i)
    if (done_[i] == 2) impl_->digests[i] = zero_digest;
  const int complete = 1;
  write_num_attr(impl_->file.get(), "complete", H5T_NATIVE_INT, &complete, 1);
  flush();
  impl_->images.reset();
  impl_->done.reset();
  impl_->file.reset();
  fault_point("packed: complete, before the rename");
  std::error_code ec;
  std::filesystem::rename(partial_, path_, ec);
  if (ec) throw Error(path_ + ": cannot rename " + partial_ + " into place: " + ec.message());
}

// ---- reader ----------------------------------------------------------------------------------------

// Note [direct chunk reads]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// Each image is one unfiltered chunk of S*S bytes, stored contiguously in the file. Its file address
// (H5Dget_chunk_info_by_coord, looked up once under the HDF5 lock and cached) lets the loader's
// threads read images with pread() concurrently, without HDF5's global lock and without an extra
// copy. The constructor checks on the first written image that pread at that address gives the same
// bytes as HDF5; otherwise (or for an unwritten chunk) reads go through HDF5 under the lock.
struct PackedDataset::Impl {
  Hid file, images, fspace, mspace;
  bool direct = false;  // chunks are exactly one unfiltered image: read them with H5Dread_chunk
  int fd = -1;          // the same file for pread (direct chunk reads), -1 when unused
  std::unique_ptr<std::atomic<int64_t>[]> addr;  // (N) file address of image i's chunk; -2 unknown, -1 none
  std::mutex mu;
  ~Impl() {
    if (fd >= 0) ::close(fd);
  }
};

namespace {

constexpr int64_t kAddrUnknown = -2, kAddrNone = -1;

// The file address of chunk i (kAddrNone if it was never written or is not a plain S*S chunk).
// Call with impl.mu held.
int64_t lookup_chunk(hid_t images, hsize_t i, size_t bytes) {
  const hsize_t off[3] = {i, 0, 0};
  unsigned mask = 0;
  haddr_t addr = HADDR_UNDEF;
  hsize_t size = 0;
  herr_t e = -1;
  H5E_BEGIN_TRY { e = H5Dget_chunk_info_by_coord(images, off, &mask, &addr, &size); }
  H5E_END_TRY;
  if (e < 0 || addr == HADDR_UNDEF || mask != 0 || size != bytes || addr > static_cast<haddr_t>(INT64_MAX))
    return kAddrNone;
  return static_cast<int64_t>(addr);
}

bool pread_all(int fd, uint8_t* dst, size_t n, int64_t off) {
  while (n > 0) {
    const ssize_t got = ::pread(fd, dst, n, static_cast<off_t>(off));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    dst += got, n -= static_cast<size_t>(got), off += got;
  }
  return true;
}

}  // namespace

PackedDataset::PackedDataset(const std::string& path) : impl_(std::make_unique<Impl>()), path_(path) {
  // The file's structure is read in a child process first (Note [untrusted files]).
  check_hdf5_in_child(path, [&] { const PackedDataset probe(path); });
  hid_t f = -1;
  H5E_BEGIN_TRY { f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT); }
  H5E_END_TRY;
  if (f < 0) throw Error(path + ": cannot open as HDF5 (missing, or not a packed dataset)");
  impl_->file = Hid(f, H5Fclose);
  int complete = 0;
  if (read_num_attr(impl_->file.get(), "complete", H5T_NATIVE_INT, &complete, 1) && !complete)
    throw Error(path + ": packed file is incomplete (rerun `cxr prepare` to finish it)");
  impl_->images = checked(H5Dopen2(f, "/images", H5P_DEFAULT), H5Dclose, "open /images", path);
  impl_->fspace = Hid(H5Dget_space(impl_->images), H5Sclose);
  hsize_t dims[3] = {0, 0, 0};
  if (H5Sget_simple_extent_ndims(impl_->fspace) != 3) throw Error(path + ": /images must be (N, S, S)");
  H5Sget_simple_extent_dims(impl_->fspace, dims, nullptr);
  if (dims[1] != dims[2]) throw Error(path + ": /images is not square: " + std::to_string(dims[1]) + "x" + std::to_string(dims[2]));
  image_size_ = static_cast<int>(dims[1]);
  const hssize_t N = static_cast<hssize_t>(dims[0]);
  // Extents come from the file: checked before anything is sized by them.
  if (N < 0 || N > (hssize_t(1) << 31) || image_size_ < 1 || image_size_ > 8192)
    throw Error(path + ": /images declares " + std::to_string(dims[0]) + " images of " + std::to_string(dims[1]) +
                " x " + std::to_string(dims[2]) + ": not a packed file cxr prepare writes (at most 2^31 images of "
                "at most 8192 x 8192)");
  for (const char* name : {"/names", "/view_positions", "/patient_keys"}) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) continue;
    Hid d = checked(H5Dopen2(f, name, H5P_DEFAULT), H5Dclose, std::string("open ") + name, path);
    Hid sp(H5Dget_space(d), H5Sclose);
    const hssize_t n = H5Sget_simple_extent_npoints(sp);
    if (n != N)
      throw Error(path + ": " + name + " has " + std::to_string(n) + " entries, /images " + std::to_string(N));
  }
  {
    Hid type(H5Dget_type(impl_->images), H5Tclose);
    if (H5Tget_class(type) != H5T_INTEGER || H5Tget_size(type) != 1 || H5Tget_sign(type) != H5T_SGN_NONE)
      throw Error(path + ": /images holds " + h5::dtype_name(type) + " values, expected uint8 (the pixels cxr prepare writes)");
  }
  names_ = read_strings(f, "/names", false, path);
  if (static_cast<hssize_t>(names_.size()) != N)
    throw Error(path + ": /names has " + std::to_string(names_.size()) + " entries, /images " + std::to_string(N));
  labels_ = read_array<uint8_t>(f, "/labels", H5T_NATIVE_UINT8, path, N * kNumClasses);
  patient_ids_ = read_array<int64_t>(f, "/patient_ids", H5T_NATIVE_INT64, path, N);
  std::vector<uint8_t> sp = read_array<uint8_t>(f, "/split", H5T_NATIVE_UINT8, path, N);
  split_.resize(sp.size());
  for (size_t i = 0; i < sp.size(); ++i) {
    if (sp[i] > 2 && sp[i] != 255)
      throw Error(path + ": /split[" + std::to_string(i) + "] is " + std::to_string(sp[i]) +
                  ", expected 0 (train), 1 (val), 2 (test) or 255 (excluded)");
    split_[i] = static_cast<Split>(sp[i]);
  }
  for (size_t i = 0; i < labels_.size(); ++i)
    if (labels_[i] > 1)
      throw Error(path + ": /labels[" + std::to_string(i / kNumClasses) + "][" + std::to_string(i % kNumClasses) +
                  "] is " + std::to_string(labels_[i]) + ", expected 0 or 1");
  if (H5Lexists(f, "/image_xxh3", H5P_DEFAULT) > 0)
    image_digests_ = read_array<uint64_t>(f, "/image_xxh3", H5T_NATIVE_UINT64, path, N);
  if (H5Lexists(f, "/view_positions", H5P_DEFAULT) > 0) views_ = read_strings(f, "/view_positions", false, path);
  views_.resize(names_.size());
  if (H5Lexists(f, "/patient_keys", H5P_DEFAULT) > 0) {
    patient_keys_ = read_strings(f, "/patient_keys", false, path);
    if (patient_keys_.size() != names_.size())
      throw Error(path + ": /patient_keys has " + std::to_string(patient_keys_.size()) + " entries, /images " +
                  std::to_string(N));
  }
  class_names_ = read_strings(f, "class_names", true, path);
  if (static_cast<int>(class_names_.size()) != kNumClasses)
    throw Error(path + ": " + std::to_string(class_names_.size()) + " class names, expected " + std::to_string(kNumClasses));
  read_num_attr(f, "seed", H5T_NATIVE_UINT64, &seed_, 1);
  double r[3];
  if (read_num_attr(f, "ratios", H5T_NATIVE_DOUBLE, r, 3)) ratios_ = {r[0], r[1], r[2]};

  const hsize_t S = static_cast<hsize_t>(image_size_);
  impl_->mspace = make_space({1, S, S});
  Hid dcpl(H5Dget_create_plist(impl_->images), H5Pclose);
  hsize_t chunk[3] = {0, 0, 0};
  impl_->direct = H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 3, chunk) == 3 && chunk[0] == 1 &&
                  chunk[1] == S && chunk[2] == S && H5Pget_nfilters(dcpl) == 0;
  if (impl_->direct && N > 0) enable_pread();
}

void PackedDataset::enable_pread() {
  const size_t bytes = static_cast<size_t>(image_bytes());
  const int64_t N = size();
  impl_->addr.reset(new std::atomic<int64_t>[static_cast<size_t>(N)]);
  for (int64_t i = 0; i < N; ++i) impl_->addr[i].store(kAddrUnknown, std::memory_order_relaxed);
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  // Check the address convention on the first written image (Note [direct chunk reads]).
  for (int64_t i = 0; i < N; ++i) {
    const int64_t a = lookup_chunk(impl_->images, static_cast<hsize_t>(i), bytes);
    impl_->addr[i].store(a, std::memory_order_relaxed);
    if (a == kAddrNone) continue;
    std::vector<uint8_t> via_hdf5(bytes), via_pread(bytes);
    const hsize_t off[3] = {static_cast<hsize_t>(i), 0, 0};
    uint32_t filters = 0;
    if (H5Dread_chunk(impl_->images, H5P_DEFAULT, off, &filters, via_hdf5.data()) >= 0 &&
        pread_all(fd, via_pread.data(), bytes, a) && via_hdf5 == via_pread)
      impl_->fd = fd;
    break;
  }
  if (impl_->fd < 0) ::close(fd);
}

PackedDataset::~PackedDataset() = default;

std::string PackedDataset::attribute(const std::string& name) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (H5Aexists(impl_->file, name.c_str()) <= 0) return "";
  Hid a(H5Aopen(impl_->file, name.c_str(), H5P_DEFAULT), H5Aclose);
  Hid t(H5Aget_type(a), H5Tclose);
  if (H5Tget_class(t) != H5T_STRING) return "";
  auto v = read_strings(impl_->file, name.c_str(), true, path_);
  return v.empty() ? "" : v[0];
}

std::vector<int64_t> PackedDataset::indices(Split s) const {
  std::vector<int64_t> out;
  for (size_t i = 0; i < split_.size(); ++i)
    if (split_[i] == s) out.push_back(static_cast<int64_t>(i));
  return out;
}

void PackedDataset::read_image(int64_t i, uint8_t* out) const { read_batch(&i, 1, out); }

void PackedDataset::read_batch(const int64_t* idx, int64_t n, uint8_t* out) const {
  const size_t bytes = static_cast<size_t>(image_size_) * static_cast<size_t>(image_size_);
  read_batch_unchecked(idx, n, out);
  if (image_digests_.empty()) return;  // a file made before checksums
  for (int64_t k = 0; k < n; ++k) {
    const uint64_t found = digest64(out + static_cast<size_t>(k) * bytes, bytes);
    const size_t i = static_cast<size_t>(idx[k]);
    if (found != image_digests_[i])
      throw Error(path_ + ": image " + std::to_string(i) + " (" + names_[i] + ") fails its checksum in /images (stored " +
                  digest_text(image_digests_[i]) + ", computed " + digest_text(found) +
                  "): the file is damaged; restore it or run cxr prepare again");
  }
}

void PackedDataset::read_batch_unchecked(const int64_t* idx, int64_t n, uint8_t* out) const {
  const hsize_t S = static_cast<hsize_t>(image_size_);
  const size_t bytes = static_cast<size_t>(S * S);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = idx[k];
    if (i < 0 || i >= size()) throw Error(path_ + ": image index " + std::to_string(i) + " out of range [0, " + std::to_string(size()) + ")");
    uint8_t* dst = out + static_cast<size_t>(k) * bytes;
    if (impl_->fd >= 0) {  // Note [direct chunk reads]: no lock, no copy
      int64_t a = impl_->addr[i].load(std::memory_order_relaxed);
      if (a == kAddrUnknown) {
        std::lock_guard<std::mutex> lock(impl_->mu);
        a = lookup_chunk(impl_->images, static_cast<hsize_t>(i), bytes);
        impl_->addr[i].store(a, std::memory_order_relaxed);
      }
      if (a >= 0) {
        if (!pread_all(impl_->fd, dst, bytes, a))
          throw Error(path_ + ": cannot read image " + std::to_string(i) + " (" + std::strerror(errno) + ")");
        continue;
      }
    }
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->direct) {
      // Note: H5Dread_chunk returns the stored bytes (no conversion); an unwritten chunk (an
      // unreadable image) fails, and falls through to the regular read that yields the fill value.
      const hsize_t off[3] = {static_cast<hsize_t>(i), 0, 0};
      uint32_t filters = 0;
      herr_t e = -1;
      H5E_BEGIN_TRY { e = H5Dread_chunk(impl_->images, H5P_DEFAULT, off, &filters, dst); }
      H5E_END_TRY;
      if (e >= 0) continue;
    }
    const hsize_t start[3] = {static_cast<hsize_t>(i), 0, 0}, count[3] = {1, S, S};
    H5Sselect_hyperslab(impl_->fspace, H5S_SELECT_SET, start, nullptr, count, nullptr);
    check(H5Dread(impl_->images, H5T_NATIVE_UINT8, impl_->mspace, impl_->fspace, H5P_DEFAULT, dst), "read image", path_);
  }
}

}  // namespace cxr::io
