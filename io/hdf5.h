// Thin RAII layer over the HDF5 C library for weight files and checkpoints: owned handles, an
// error silencer (HDF5 prints its error stack to stderr by default; we throw instead, with the
// innermost message of that stack), and typed helpers for the attributes and datasets that Keras
// files use (variable- and fixed-length string attributes, float32 datasets at nested paths).
//
// Every helper throws cxr::Error; messages name the object path, and callers add the file name.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cxr::io::h5 {

// An owned hid_t, closed with the matching H5*close on destruction. Move-only.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: handles are passed straight to H5* calls
  bool valid() const { return id_ >= 0; }
  // Closes now and reports whether HDF5 succeeded (a file close flushes: its failure matters).
  bool close();
  void reset();  // closes now, ignoring HDF5's verdict (destructors, abandoned handles)

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// While alive, HDF5 prints nothing (restores the previous handler on destruction).
class Silence {
 public:
  Silence();
  ~Silence();
  Silence(const Silence&) = delete;
  Silence& operator=(const Silence&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// The innermost (most specific) message of HDF5's current error stack, or "" if it is empty.
std::string last_error();

// 1 = an HDF5 file, 0 = not one (or unreadable), with the reason in *why.
bool is_hdf5(const std::string& path, std::string* why);

Handle open_file(const std::string& path);  // read-only; throws naming the path and HDF5's reason
Handle create_file(const std::string& path);  // truncates
Handle open_group(hid_t loc, const std::string& path);
Handle open_dataset(hid_t loc, const std::string& path);

// True if every component of `path` (relative to loc, '/'-separated) exists. Never throws.
bool exists(hid_t loc, const std::string& path);
bool is_group(hid_t loc, const std::string& path);
bool is_dataset(hid_t loc, const std::string& path);
bool has_attr(hid_t obj, const std::string& name);
// Names of a group's members, in HDF5's name order.
std::vector<std::string> members(hid_t loc, const std::string& path);

// Note [HDF5 strings as writers store them]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// h5py 3 and tf.keras store variable-length strings. h5py 2.x (Keras 2.0-2.2, so the official
// Keras ImageNet files) stored numpy `S` arrays: fixed-length strings whose slot is as long as the
// longest one, padded with NULs (H5T_STR_NULLPAD), so the longest name fills its slot with no
// terminator. Converting such a string to HDF5's default NULLTERM memory type overwrites its last
// byte with a terminator ("kernel:0" -> "kernel:"). The reader below therefore copies fixed-length
// slots unconverted and cuts each by the file's own padding: NULLTERM and NULLPAD at the first NUL
// (the whole slot when it has none), SPACEPAD after the last non-space. Bytes are kept as they are
// (ASCII and UTF-8 alike).

// How a string attribute or dataset is stored.
struct StringLayout {
  bool variable = false;  // variable-length; else fixed-length slots of `size` bytes
  size_t size = 0;
  H5T_str_t pad = H5T_STR_NULLTERM;
  H5T_cset_t cset = H5T_CSET_ASCII;
  std::string describe() const;  // "fixed-length 20-byte NULLPAD ASCII", "variable-length UTF-8"
};
// The layout of a string attribute; nullopt when it holds another type (or does not exist).
std::optional<StringLayout> string_layout_attr(hid_t obj, const std::string& name);

// The one string reader (Note [HDF5 strings as writers store them]): variable- or fixed-length,
// any padding, ASCII or UTF-8, scalar or 1-D, from an attribute or a dataset. An attribute of
// another type with zero elements (Keras writes an empty float64 array for a layer without
// weights) reads as {}.
std::vector<std::string> read_strings_attr(hid_t obj, const std::string& name);
std::string read_string_attr(hid_t obj, const std::string& name);
std::vector<std::string> read_strings_dataset(hid_t loc, const std::string& path);
double read_double_attr(hid_t obj, const std::string& name);
int64_t read_int_attr(hid_t obj, const std::string& name);
std::vector<int64_t> read_ints_attr(hid_t obj, const std::string& name);

void write_string_attr(hid_t obj, const std::string& name, const std::string& value);
// Variable-length strings, like h5py and tf.keras write them; an empty list is written as an empty
// float64 array (what tf.keras writes for `weight_names` of a layer without weights).
void write_strings_attr(hid_t obj, const std::string& name, const std::vector<std::string>& values);
void write_double_attr(hid_t obj, const std::string& name, double value);
void write_int_attr(hid_t obj, const std::string& name, int64_t value);
void write_ints_attr(hid_t obj, const std::string& name, const std::vector<int64_t>& values);

struct DatasetInfo {
  std::vector<int64_t> shape;
  std::string dtype;  // "float32", "float64", "int64", "string", ... (numpy-like names)
};
DatasetInfo dataset_info(hid_t loc, const std::string& path);
std::string dtype_name(hid_t type);

// Checksums (io/digest.h): the `cxr_xxh3` attribute of a dataset, if it has one; writing it; and
// checking `bytes` of data read from `obj` against it (CXR_FAIL naming `path` on a mismatch; nothing
// when the dataset has none, as files of other writers).
std::optional<uint64_t> stored_digest(hid_t obj);
void write_digest(hid_t obj, uint64_t digest);
void check_digest(hid_t obj, const std::string& path, const void* data, size_t bytes);

// Reads a float32 dataset of exactly `expected` elements into out (must hold them), checking its
// checksum when it has one.
void read_floats(hid_t loc, const std::string& path, float* out, int64_t expected);
// Creates the dataset (and any missing intermediate groups), writes float32 data and its checksum.
void write_floats(hid_t loc, const std::string& path, const std::vector<int64_t>& shape, const float* data);
// Scalar variable-length string datasets (for long text: attributes are limited to 64 KiB).
void write_string_dataset(hid_t loc, const std::string& path, const std::string& value);
std::string read_string_dataset(hid_t loc, const std::string& path);
Handle create_group(hid_t loc, const std::string& path);  // with intermediate groups

}  // namespace cxr::io::h5
