// The packed dataset: one HDF5 file holding every image decoded and resized once, so that training
// reads 100 KB a 320x320 image instead of decoding a 1024x1024 PNG (~6 ms).
//
// Layout (N images of S x S, C = 14 classes):
//   /images          uint8  (N, S, S)   chunked (1, S, S), uncompressed: one chunk per image
//   /labels          uint8  (N, C)      0/1 in io/classes.h order
//   /names           string (N)         image file names, fixed length
//   /patient_ids     int64  (N)
//   /view_positions  string (N)         "PA" / "AP"
//   /patient_keys    string (N)         only for DICOM-made files: the text Patient ID, as given or as
//                                       a keyed hash (root attribute patient_key_hash says which);
//                                       /patient_ids then holds 63 bits of its SHA-256
//   /split           uint8  (N)         0 train, 1 val, 2 test, 255 excluded (image unreadable)
//   /done            uint8  (N)         0 pending, 1 written, 2 unreadable (resume bookkeeping)
//   /image_xxh3      uint64 (N)         each image's checksum (io/digest.h), checked on every read;
//                                       /labels, /patient_ids and /split carry theirs as attributes
//   root attributes: format ("cxr-packed-1"), class_names (C strings), image_size, command,
//   source_csv, split_method ("random" | "lists"), split_lists, resize (the filter and reduction
//   used), synthetic (only for data made by cxr synth: its marker, io/synth.h), seed, ratios (3 doubles), created
//   (UTC date), fingerprint (of names, split and size; resume requires it to match), complete (0/1).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/classes.h"
#include "io/csv.h"
#include "io/split.h"

namespace cxr::io {

inline constexpr const char* kPackedFormat = "cxr-packed-1";

struct PackedMeta {
  int image_size = 320;
  std::string command;       // the command line that made the file
  std::string source_csv;
  std::string split_method;  // "random" or "lists"
  std::string split_lists;   // the list files, space-separated
  std::string resize;        // how images were resized (io/image.h), e.g. "mitchell antialiased"
  std::string patient_key_hash;  // "" (no text IDs), "none" (as given) or "hmac-sha256 (key file ...)"
  std::string synthetic;         // "" (not known to be synthetic) or the cxr synth marker it was made from
  uint64_t seed = 0;
  SplitRatios ratios;
};

// Builds a packed file under a temporary name (<path>.partial) and renames it to <path> in finish().
// If <path>.partial exists with the same fingerprint, it is reopened and the images already marked
// done are kept (resume). Not thread-safe: call from one thread.
class PackedWriter {
 public:
  PackedWriter(const std::string& path, const std::vector<LabelRow>& rows, const std::vector<Split>& split,
               const PackedMeta& meta);
  ~PackedWriter();  // closes without renaming if finish() was not called (the file stays resumable)
  PackedWriter(const PackedWriter&) = delete;
  PackedWriter& operator=(const PackedWriter&) = delete;

  int64_t size() const { return static_cast<int64_t>(done_.size()); }
  bool resumed() const { return resumed_; }
  const std::vector<uint8_t>& done() const { return done_; }  // (N) 0 pending, 1 written, 2 unreadable
  const std::string& partial_path() const { return partial_; }

  void write_image(int64_t i, const uint8_t* pixels);  // (S, S); marks done = 1
  void mark_unreadable(int64_t i);                     // marks done = 2
  void flush();                                        // writes /done and flushes the file
  // Sets the split of unreadable images to Excluded, marks complete, closes, renames into place.
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_, partial_;
  std::vector<uint8_t> done_;
  bool resumed_ = false;
};

// Read access to a packed file; one object may be shared by threads. Images are read with pread()
// at their chunk's file address, concurrently (see Note [direct chunk reads] in packed.cpp); HDF5
// calls are serialised internally.
class PackedDataset {
 public:
  explicit PackedDataset(const std::string& path);
  ~PackedDataset();
  PackedDataset(const PackedDataset&) = delete;
  PackedDataset& operator=(const PackedDataset&) = delete;

  const std::string& path() const { return path_; }
  int64_t size() const { return static_cast<int64_t>(names_.size()); }
  int image_size() const { return image_size_; }
  int64_t image_bytes() const { return static_cast<int64_t>(image_size_) * image_size_; }
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<int64_t>& patient_ids() const { return patient_ids_; }
  const std::vector<std::string>& view_positions() const { return views_; }
  // Text Patient IDs of DICOM-made files (as given, or hashed: attribute("patient_key_hash")); empty
  // for files made from NIH's CSV, whose IDs are the integers of patient_ids().
  const std::vector<std::string>& patient_keys() const { return patient_keys_; }
  const std::vector<uint8_t>& labels() const { return labels_; }  // (N, 14)
  const std::vector<Split>& split() const { return split_; }
  const std::vector<std::string>& class_names() const { return class_names_; }
  // A string root attribute ("" when absent): command, source_csv, created, split_method, ...
  std::string attribute(const std::string& name) const;
  uint64_t seed() const { return seed_; }
  SplitRatios ratios() const { return ratios_; }

  // Indices (ascending) of the images in one set.
  std::vector<int64_t> indices(Split s) const;

  void read_image(int64_t i, uint8_t* out) const;  // out: (S, S)
  // out: (n, S, S), image k = index idx[k]; indices in any order, repeats allowed. Each image is
  // checked against its checksum in /image_xxh3 (files made before checksums: not checked); a
  // mismatch throws naming the file, the image index and its name.
  void read_batch(const int64_t* idx, int64_t n, uint8_t* out) const;
  // The same without the checksums (the loader's speed benchmark, beside the checked read).
  void read_batch_unchecked(const int64_t* idx, int64_t n, uint8_t* out) const;
  bool has_checksums() const { return !image_digests_.empty(); }

 private:
  void enable_pread();

  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  int image_size_ = 0;
  std::vector<std::string> names_, views_, class_names_, patient_keys_;
  std::vector<int64_t> patient_ids_;
  std::vector<uint64_t> image_digests_;
  std::vector<uint8_t> labels_;
  std::vector<Split> split_;
  uint64_t seed_ = 0;
  SplitRatios ratios_;
};

}  // namespace cxr::io
