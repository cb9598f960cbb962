// Damaging our HDF5 files on purpose (the checksum and loader-shutdown tests): where a dataset's
// bytes lie in the file, and a bit flipped in place.
#pragma once
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace cxr::test {

// Flips one bit of the byte at `offset` of `path` in place.
inline void flip_byte(const std::string& path, int64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.seekg(offset);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x10);
  f.seekp(offset);
  f.write(&c, 1);
}

// File offset of a contiguous dataset's data, or of chunk `chunk` of a chunked one; -1 if none.
inline int64_t data_offset(const std::string& path, const std::string& dataset, int64_t chunk = -1) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  haddr_t a = HADDR_UNDEF;
  if (chunk < 0) {
    a = H5Dget_offset(d);
  } else {
    hid_t sp = H5Dget_space(d);
    hsize_t off[3] = {0, 0, 0}, size = 0;
    unsigned mask = 0;
    H5Dget_chunk_info(d, sp, hsize_t(chunk), off, &mask, &a, &size);
    H5Sclose(sp);
  }
  H5Dclose(d);
  H5Fclose(f);
  return a == HADDR_UNDEF ? -1 : int64_t(a);
}

}  // namespace cxr::test
