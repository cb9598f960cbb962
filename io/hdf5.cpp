#include "io/hdf5.h"

#include "io/digest.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "engine/error.h"

namespace cxr::io::h5 {

bool Handle::close() {
  if (id_ < 0) return true;
  const herr_t st = close_(id_);
  id_ = H5I_INVALID_HID;
  return st >= 0;
}

void Handle::reset() {
  if (id_ >= 0) close_(id_);  // destructors only release; errors were reported by close()
  id_ = H5I_INVALID_HID;
}

Silence::Silence() {
  H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}
Silence::~Silence() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }

namespace {

herr_t collect_innermost(unsigned n, const H5E_error2_t* err, void* out) {
  // Walked upward: the first entry (n == 0) is where HDF5 detected the problem.
  if (n == 0 && err->desc) *static_cast<std::string*>(out) = err->desc;
  return 0;
}

// HDF5's low-level I/O errors run over several lines ("file write failed: time = ..., filename =
// ..., errno = 27, error message = 'File too large', buf = 0x..."): kept to what failed and the
// system's reason.
std::string shortened(const std::string& desc) {
  const std::string key = "error message = '";
  const size_t at = desc.find(key), colon = desc.find(':');
  if (at == std::string::npos || colon == std::string::npos) return desc;
  const size_t end = desc.find('\'', at + key.size());
  return desc.substr(0, colon) + ": " + desc.substr(at + key.size(), end - at - key.size());
}

Handle attr(hid_t obj, const std::string& name) {
  Handle a(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
  if (!a.valid()) CXR_FAIL("cannot open attribute '", name, "': ", last_error());
  return a;
}

Handle string_type(bool variable, size_t size = 0) {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t, variable ? H5T_VARIABLE : size);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

Handle lcpl_intermediate() {
  Handle p(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(p, 1);
  return p;
}

Handle new_attr(hid_t obj, const std::string& name, hid_t type, hid_t space) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Handle a(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.valid()) CXR_FAIL("cannot create attribute '", name, "': ", last_error());
  return a;
}

herr_t read_into(hid_t obj, hid_t memtype, void* buf) {
  return H5Iget_type(obj) == H5I_ATTR ? H5Aread(obj, memtype, buf)
                                      : H5Dread(obj, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
}

// One fixed-length slot cut by the file's padding (Note [HDF5 strings as writers store them]).
std::string cut_slot(const char* slot, size_t size, H5T_str_t pad) {
  if (pad == H5T_STR_SPACEPAD) {
    size_t n = size;
    while (n > 0 && (slot[n - 1] == ' ' || slot[n - 1] == '\0')) --n;
    return std::string(slot, n);
  }
  return std::string(slot, strnlen(slot, size));  // NULLTERM, NULLPAD: a full slot has no NUL
}

// The bytes of the file that holds obj (0 when unknown).
uint64_t file_bytes(hid_t obj) {
  Handle f(H5Iget_file_id(obj), H5Fclose);
  hsize_t size = 0;
  if (!f.valid() || H5Fget_filesize(f, &size) < 0) return 0;
  return size;
}

// Whether obj is a dataset stored through filters (compression): its bytes may exceed the file's.
bool filtered(hid_t obj) {
  if (H5Iget_type(obj) != H5I_DATASET) return false;  // attributes are stored as they are
  Handle dcpl(H5Dget_create_plist(obj), H5Pclose);
  return dcpl.valid() && H5Pget_nfilters(dcpl) > 0;
}

// obj: an attribute or a dataset of class H5T_STRING.
// Note [declared string sizes]: the count and the fixed length come from the file's header, and were
// allocated before the read could fail: a mutated 9,792-byte packed file declaring its 6 names
// 536,870,928 bytes long made us allocate 3 GiB (fuzz_packed, 2026-12-07). Unfiltered data lies in the file, so it cannot
// declare more bytes than the file has; a variable-length string takes at least its 16-byte heap
// reference there. Filtered (compressed) data is bounded by 1032 times the file, deflate's largest
// ratio (no cxr writer compresses strings; Keras' and h5py's are attributes, never filtered).
std::vector<std::string> read_strings(hid_t obj, hid_t type, hid_t space, const std::string& what) {
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  std::vector<std::string> out;
  if (n <= 0) return out;
  const uint64_t have = file_bytes(obj);
  const bool variable = H5Tis_variable_str(type) > 0;
  const uint64_t each = variable ? 16 : uint64_t(H5Tget_size(type));
  const uint64_t bound = filtered(obj) ? have * 1032 : have;
  if (have > 0 && each > 0 && uint64_t(n) > bound / each)
    CXR_FAIL("cannot read strings of ", what, ": ", n, variable ? " variable-length strings" : " strings of ",
             variable ? "" : std::to_string(each) + " bytes", " declared, more than the file's ", have,
             " bytes can hold");
  if (variable) {
    Handle mt = string_type(true);
    H5Tset_cset(mt, H5Tget_cset(type));
    std::vector<char*> p(size_t(n), nullptr);
    if (read_into(obj, mt, p.data()) < 0) CXR_FAIL("cannot read strings of ", what, ": ", last_error());
    for (char* s : p) out.emplace_back(s ? s : "");
    H5Dvlen_reclaim(mt, space, H5P_DEFAULT, p.data());
    return out;
  }
  // The file's own type as the memory type: the slots arrive unconverted.
  const size_t size = H5Tget_size(type);
  Handle mt(H5Tcopy(type), H5Tclose);
  std::vector<char> buf(size * size_t(n));
  if (read_into(obj, mt, buf.data()) < 0) CXR_FAIL("cannot read strings of ", what, ": ", last_error());
  const H5T_str_t pad = H5Tget_strpad(type);
  for (hssize_t i = 0; i < n; ++i) out.push_back(cut_slot(buf.data() + size_t(i) * size, size, pad));
  return out;
}

StringLayout layout_of(hid_t type) {
  StringLayout l;
  l.variable = H5Tis_variable_str(type) > 0;
  l.size = l.variable ? 0 : H5Tget_size(type);
  l.pad = H5Tget_strpad(type);
  l.cset = H5Tget_cset(type);
  return l;
}

}  // namespace

std::string last_error() {
  std::string s;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_innermost, &s);
  return s.empty() ? "no HDF5 error message" : shortened(s);
}

bool is_hdf5(const std::string& path, std::string* why) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    *why = std::strerror(errno);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    *why = "not a regular file";
    return false;
  }
  Silence quiet;
  const htri_t r = H5Fis_hdf5(path.c_str());
  if (r > 0) return true;
  *why = r == 0 ? "not an HDF5 file (no HDF5 signature found)" : "cannot read it: " + last_error();
  return false;
}

Handle open_file(const std::string& path) {
  Silence quiet;
  Handle f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!f.valid()) CXR_FAIL(path, ": cannot open the HDF5 file: ", last_error());
  return f;
}

Handle create_file(const std::string& path) {
  Silence quiet;
  Handle f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!f.valid()) CXR_FAIL(path, ": cannot create the HDF5 file: ", last_error());
  return f;
}

Handle open_group(hid_t loc, const std::string& path) {
  Handle g(H5Gopen2(loc, path.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.valid()) CXR_FAIL("cannot open group ", path, ": ", last_error());
  return g;
}

Handle open_dataset(hid_t loc, const std::string& path) {
  Handle d(H5Dopen2(loc, path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.valid()) CXR_FAIL("cannot open dataset ", path, ": ", last_error());
  return d;
}

Handle create_group(hid_t loc, const std::string& path) {
  Handle lcpl = lcpl_intermediate();
  Handle g(H5Gcreate2(loc, path.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!g.valid()) CXR_FAIL("cannot create group ", path, ": ", last_error());
  return g;
}

bool exists(hid_t loc, const std::string& path) {
  Silence quiet;
  if (path.empty() || path == "/") return true;
  size_t pos = path[0] == '/' ? 1 : 0;
  while (true) {
    const size_t slash = path.find('/', pos);
    const std::string prefix = path.substr(0, slash);
    if (H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) break;
    // The prefix must be a group for the next component to be looked up in it.
    H5O_info_t info{};
    if (H5Oget_info_by_name(loc, prefix.c_str(), &info, H5P_DEFAULT) < 0 || info.type != H5O_TYPE_GROUP)
      return false;
    pos = slash + 1;
  }
  return H5Oexists_by_name(loc, path.c_str(), H5P_DEFAULT) > 0;
}

namespace {
H5O_type_t object_type(hid_t loc, const std::string& path) {
  if (!exists(loc, path)) return H5O_TYPE_UNKNOWN;
  Silence quiet;
  H5O_info_t info{};
  if (H5Oget_info_by_name(loc, path.c_str(), &info, H5P_DEFAULT) < 0) return H5O_TYPE_UNKNOWN;
  return info.type;
}
}  // namespace

bool is_group(hid_t loc, const std::string& path) { return object_type(loc, path) == H5O_TYPE_GROUP; }
bool is_dataset(hid_t loc, const std::string& path) { return object_type(loc, path) == H5O_TYPE_DATASET; }

bool has_attr(hid_t obj, const std::string& name) {
  Silence quiet;
  return H5Aexists(obj, name.c_str()) > 0;
}

std::vector<std::string> members(hid_t loc, const std::string& path) {
  Handle g = open_group(loc, path);
  H5G_info_t info{};
  if (H5Gget_info(g, &info) < 0) CXR_FAIL("cannot list group ", path, ": ", last_error());
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) CXR_FAIL("cannot list group ", path, ": ", last_error());
    std::string s(size_t(n) + 1, '\0');
    H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, s.data(), s.size(), H5P_DEFAULT);
    s.resize(size_t(n));
    names.push_back(s);
  }
  return names;
}

std::vector<std::string> read_strings_attr(hid_t obj, const std::string& name) {
  Handle a = attr(obj, name);
  Handle type(H5Aget_type(a), H5Tclose), space(H5Aget_space(a), H5Sclose);
  if (H5Tget_class(type) != H5T_STRING) {
    if (H5Sget_simple_extent_npoints(space) == 0) return {};
    CXR_FAIL("attribute '", name, "' holds ", dtype_name(type), ", expected strings");
  }
  return read_strings(a, type, space, "attribute '" + name + "'");
}

std::string read_string_attr(hid_t obj, const std::string& name) {
  const auto v = read_strings_attr(obj, name);
  if (v.size() != 1) CXR_FAIL("attribute '", name, "': expected one string, found ", v.size());
  return v[0];
}

std::vector<std::string> read_strings_dataset(hid_t loc, const std::string& path) {
  Handle d = open_dataset(loc, path);
  Handle type(H5Dget_type(d), H5Tclose), space(H5Dget_space(d), H5Sclose);
  if (H5Tget_class(type) != H5T_STRING)
    CXR_FAIL("dataset ", path, ": expected strings, found ", dtype_name(type));
  return read_strings(d, type, space, "dataset " + path);
}

std::optional<StringLayout> string_layout_attr(hid_t obj, const std::string& name) {
  if (!has_attr(obj, name)) return std::nullopt;
  Handle a = attr(obj, name);
  Handle type(H5Aget_type(a), H5Tclose);
  if (H5Tget_class(type) != H5T_STRING) return std::nullopt;
  return layout_of(type);
}

std::string StringLayout::describe() const {
  const char* cs = cset == H5T_CSET_UTF8 ? "UTF-8" : "ASCII";
  if (variable) return std::string("variable-length ") + cs;
  const char* p = pad == H5T_STR_NULLPAD ? "NULLPAD" : pad == H5T_STR_SPACEPAD ? "SPACEPAD" : "NULLTERM";
  return "fixed-length " + std::to_string(size) + "-byte " + p + " " + cs;
}

namespace {
template <typename T>
std::vector<T> read_numeric_attr(hid_t obj, const std::string& name, hid_t memtype, H5T_class_t want) {
  Handle a = attr(obj, name);
  Handle type(H5Aget_type(a), H5Tclose), space(H5Aget_space(a), H5Sclose);
  const H5T_class_t c = H5Tget_class(type);
  if (c != H5T_INTEGER && c != H5T_FLOAT)
    CXR_FAIL("attribute '", name, "' holds ", dtype_name(type), ", expected a number");
  if (want == H5T_INTEGER && c != H5T_INTEGER)
    CXR_FAIL("attribute '", name, "' holds ", dtype_name(type), ", expected an integer");
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  std::vector<T> v(size_t(std::max<hssize_t>(n, 0)));
  if (n > 0 && H5Aread(a, memtype, v.data()) < 0) CXR_FAIL("cannot read attribute '", name, "': ", last_error());
  return v;
}
}  // namespace

double read_double_attr(hid_t obj, const std::string& name) {
  const auto v = read_numeric_attr<double>(obj, name, H5T_NATIVE_DOUBLE, H5T_FLOAT);
  if (v.size() != 1) CXR_FAIL("attribute '", name, "': expected one number, found ", v.size());
  return v[0];
}

int64_t read_int_attr(hid_t obj, const std::string& name) {
  const auto v = read_numeric_attr<int64_t>(obj, name, H5T_NATIVE_INT64, H5T_INTEGER);
  if (v.size() != 1) CXR_FAIL("attribute '", name, "': expected one integer, found ", v.size());
  return v[0];
}

std::vector<int64_t> read_ints_attr(hid_t obj, const std::string& name) {
  return read_numeric_attr<int64_t>(obj, name, H5T_NATIVE_INT64, H5T_INTEGER);
}

void write_string_attr(hid_t obj, const std::string& name, const std::string& value) {
  Handle type = string_type(true);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a = new_attr(obj, name, type, space);
  const char* p = value.c_str();
  if (H5Awrite(a, type, &p) < 0) CXR_FAIL("cannot write attribute '", name, "': ", last_error());
}

void write_strings_attr(hid_t obj, const std::string& name, const std::vector<std::string>& values) {
  if (values.empty()) {
    const hsize_t zero = 0;
    Handle space(H5Screate_simple(1, &zero, nullptr), H5Sclose);
    new_attr(obj, name, H5T_IEEE_F64LE, space);
    return;
  }
  Handle type = string_type(true);
  const hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle a = new_attr(obj, name, type, space);
  std::vector<const char*> p;
  for (const auto& s : values) p.push_back(s.c_str());
  if (H5Awrite(a, type, p.data()) < 0) CXR_FAIL("cannot write attribute '", name, "': ", last_error());
}

void write_double_attr(hid_t obj, const std::string& name, double value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a = new_attr(obj, name, H5T_IEEE_F64LE, space);
  if (H5Awrite(a, H5T_NATIVE_DOUBLE, &value) < 0) CXR_FAIL("cannot write attribute '", name, "': ", last_error());
}

void write_int_attr(hid_t obj, const std::string& name, int64_t value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a = new_attr(obj, name, H5T_STD_I64LE, space);
  if (H5Awrite(a, H5T_NATIVE_INT64, &value) < 0) CXR_FAIL("cannot write attribute '", name, "': ", last_error());
}

void write_ints_attr(hid_t obj, const std::string& name, const std::vector<int64_t>& values) {
  const hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle a = new_attr(obj, name, H5T_STD_I64LE, space);
  if (n && H5Awrite(a, H5T_NATIVE_INT64, values.data()) < 0)
    CXR_FAIL("cannot write attribute '", name, "': ", last_error());
}

std::string dtype_name(hid_t type) {
  const size_t size = H5Tget_size(type);
  switch (H5Tget_class(type)) {
    case H5T_FLOAT: return "float" + std::to_string(8 * size);
    case H5T_INTEGER:
      return std::string(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(8 * size);
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_REFERENCE: return "reference";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "vlen";
    default: return "unknown type";
  }
}

DatasetInfo dataset_info(hid_t loc, const std::string& path) {
  Handle d = open_dataset(loc, path);
  Handle type(H5Dget_type(d), H5Tclose), space(H5Dget_space(d), H5Sclose);
  DatasetInfo info;
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) CXR_FAIL("cannot read the shape of dataset ", path, ": ", last_error());
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  for (hsize_t v : dims) info.shape.push_back(int64_t(v));
  info.dtype = dtype_name(type);
  return info;
}

std::optional<uint64_t> stored_digest(hid_t obj) {
  if (H5Aexists(obj, kDigestAttr) <= 0) return std::nullopt;
  Handle a(H5Aopen(obj, kDigestAttr, H5P_DEFAULT), H5Aclose);
  uint64_t v = 0;
  if (!a.valid() || H5Aread(a, H5T_NATIVE_UINT64, &v) < 0) return std::nullopt;
  return v;
}

void write_digest(hid_t obj, uint64_t digest) {
  if (H5Aexists(obj, kDigestAttr) > 0) H5Adelete(obj, kDigestAttr);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate2(obj, kDigestAttr, H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.valid() || H5Awrite(a, H5T_NATIVE_UINT64, &digest) < 0)
    CXR_FAIL("cannot write the checksum attribute: ", last_error());
}

void check_digest(hid_t obj, const std::string& path, const void* data, size_t bytes) {
  const auto stored = stored_digest(obj);
  if (!stored) return;
  const uint64_t found = digest64(data, bytes);
  if (found != *stored)
    CXR_FAIL("dataset ", path, " fails its checksum (stored ", digest_text(*stored), ", computed ", digest_text(found),
             "): the file is damaged; restore it from a copy");
}

void read_floats(hid_t loc, const std::string& path, float* out, int64_t expected) {
  Handle d = open_dataset(loc, path);
  Handle type(H5Dget_type(d), H5Tclose), space(H5Dget_space(d), H5Sclose);
  if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 4)
    CXR_FAIL("dataset ", path, ": expected float32, found ", dtype_name(type));
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  if (n != expected) CXR_FAIL("dataset ", path, ": expected ", expected, " elements, found ", n);
  if (n > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    CXR_FAIL("dataset ", path, ": cannot read its data: ", last_error());
  // Files we wrote carry the XXH3 of the stored (little-endian float32) bytes; others have none.
  check_digest(d, path, out, sizeof(float) * size_t(n));
}

void write_floats(hid_t loc, const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(int(dims.size()), dims.data(), nullptr),
               H5Sclose);
  Handle lcpl = lcpl_intermediate();
  Handle d(H5Dcreate2(loc, path.c_str(), H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  if (!d.valid()) CXR_FAIL("cannot create dataset ", path, ": ", last_error());
  if (H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    CXR_FAIL("cannot write dataset ", path, ": ", last_error());
  size_t n = 1;
  for (hsize_t v : dims) n *= size_t(v);
  write_digest(d, digest64(data, sizeof(float) * n));
}

void write_string_dataset(hid_t loc, const std::string& path, const std::string& value) {
  Handle type = string_type(true);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle lcpl = lcpl_intermediate();
  Handle d(H5Dcreate2(loc, path.c_str(), type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  if (!d.valid()) CXR_FAIL("cannot create dataset ", path, ": ", last_error());
  const char* p = value.c_str();
  if (H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p) < 0)
    CXR_FAIL("cannot write dataset ", path, ": ", last_error());
}

std::string read_string_dataset(hid_t loc, const std::string& path) {
  const auto v = read_strings_dataset(loc, path);
  if (v.size() != 1) CXR_FAIL("dataset ", path, ": expected one string, found ", v.size());
  return v[0];
}

}  // namespace cxr::io::h5
