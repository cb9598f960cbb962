// Untrusted files are read in a child process first (io/isolated_read.h, Note [untrusted files]): a
// crash or a hang of libhdf5 or GDCM becomes one error naming the file. The mechanism on functions
// that crash, loop, throw or succeed; the readers on what the fuzzers found in libhdf5 1.10.8 and
// GDCM 3.0.21 (tests/fuzz/library_findings/); an isolated DICOM decode gives what an in-process one
// does.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include "engine/error.h"
#include "io/checkpoint.h"
#include "io/dicom.h"
#include "io/isolated_read.h"
#include "io/packed.h"
#include "io/weights.h"
#include "tests/fuzz/tiny_model.h"
#include "test_util.h"

namespace cxr::io {
namespace {

// The error check_hdf5_in_child throws for `read`, or "" when it throws none.
std::string guard_error(const std::function<void()>& read) {
  try {
    check_hdf5_in_child("some/file.h5", read);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

class IsolatedRead : public ::testing::Test {
 protected:
  void SetUp() override {
    set_isolated_reads(true);
    ::setenv("CXR_ISOLATE_SECONDS", "2", 1);  // a hang is known in 2 s; these reads take milliseconds
  }
  void TearDown() override { ::unsetenv("CXR_ISOLATE_SECONDS"); }
};

TEST_F(IsolatedRead, ACrashAHangOrAThrowInTheChildIsOneErrorNamingTheFile) {
  EXPECT_EQ(guard_error([] {}), "");
  EXPECT_EQ(guard_error([] { throw Error("some/file.h5: /labels holds 5"); }), "some/file.h5: /labels holds 5")
      << "the child's own message, as the read would have thrown here";
  // A signal: reported as a crash (under ASan its handler reports and exits non-zero instead).
  const std::string crash = guard_error([] { std::raise(SIGSEGV); });
  EXPECT_TRUE(contains(crash, "some/file.h5: ")) << crash;
  EXPECT_TRUE(contains(crash, "crashed") || contains(crash, "abnormally")) << crash;
  const std::string abort = guard_error([] { std::abort(); });  // GDCM's and HDF5's failed assertions
  EXPECT_TRUE(contains(abort, "crashed") || contains(abort, "abnormally")) << abort;
  const std::string hang = guard_error([] {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));  // as the library's endless loop
  });
  EXPECT_TRUE(contains(hang, "some/file.h5: reading the file did not finish in 2 s (the HDF5 library loops")) << hang;
}

// A reply far beyond a pipe's buffer comes back whole, and threads isolating reads at once (prepare
// decodes DICOMs on several) each get their own child's reply: a child forked by one thread while
// another's pipe was open would hold that pipe and stall its reader.
TEST_F(IsolatedRead, LargeRepliesAndConcurrentChildren) {
  // No deadline to speak of: forking an ASan process with four threads at once takes seconds.
  ::setenv("CXR_ISOLATE_SECONDS", "300", 1);
  const std::string big(50u << 20, 'x');
  EXPECT_EQ(run_isolated("big.h5", "test", [&] { return big; }).size(), big.size());
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // GCC 12's sanitizer runtimes take no care of their allocator's locks across fork(): a child forked
  // while another thread allocates waits for that lock for ever (this test hung there). glibc's
  // malloc, which the tools use, resets its locks in the child.
  GTEST_SKIP() << "concurrent forks: the sanitizer runtime's allocator is not fork-safe (glibc's is)";
#endif
  std::vector<std::thread> threads;
  std::vector<int> wrong(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t, &wrong] {
      for (int k = 0; k < 20; ++k) {
        const std::string want = std::to_string(t) + ":" + std::to_string(k) + std::string(size_t(k) * 10000, 'y');
        try {
          if (run_isolated("f.dcm", "test", [&] { return want; }) != want) ++wrong[size_t(t)];
        } catch (const Error&) {
          ++wrong[size_t(t)];
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong, std::vector<int>(4, 0));
}

TEST_F(IsolatedRead, NestedReadsAndTheSwitchRunDirectly) {
  int runs = 0;
  const int result = guarded_hdf5_read("f.h5", [&] {
    check_hdf5_in_child("f.h5", [] { std::abort(); });  // nested: not forked again, not run
    return ++runs;
  });
  EXPECT_EQ(result, 1);
  EXPECT_EQ(runs, 1) << "the parent's pass runs once here (the child's pass ran in the child)";
  set_isolated_reads(false);
  EXPECT_EQ(guard_error([] { std::abort(); }), "") << "off: nothing runs in a child";
  set_isolated_reads(true);
}

// The inputs the fuzzers found: libhdf5 loops for ever in H5HG_read on a damaged global heap (the
// variable-length layer names), and reads out of bounds in H5Aexists (seen under ASan; without it
// the library refuses the file). Each reader now fails with one error naming the file.
TEST_F(IsolatedRead, WhatTheFuzzersFoundInLibhdf5IsAnError) {
  const ParamTable& table = fuzz::tiny_table();
  for (const char* name : {"hdf5-H5HG_read-loop-weights.h5", "hdf5-H5HG_read-loop-checkpoint.h5"}) {
    const std::string path = test::source_path(std::string("tests/fuzz/library_findings/") + name);
    std::vector<float> params(size_t(table.trainable_count()), 0.5f), state(size_t(table.state_count()), 0.5f);
    try {
      load_weights(path, table, params, state, HeadPolicy::LoadOrInit, 1);
      ADD_FAILURE() << path << " loaded";
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), path + ": reading the file did not finish in 2 s (the HDF5 library loops")) << e.what();
    }
    EXPECT_EQ(params, std::vector<float>(params.size(), 0.5f)) << "nothing was loaded";
  }
  EXPECT_THROW(scan_weight_file(test::source_path("tests/fuzz/library_findings/hdf5-H5HG_read-loop-weights.h5")),
               Error);
  const std::string overflow = test::source_path("tests/fuzz/library_findings/hdf5-H5Aexists-heap-overflow.h5");
  try {
    PackedDataset d(overflow);
    ADD_FAILURE() << overflow << " opened";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), overflow + ": ")) << e.what();
  }
  // A damaged global heap under the variable-length layer names: H5HG_read (from H5T__conv_vlen)
  // copies from a wild address; in-process this file kills a Release build with SIGSEGV
  // (fuzz_checkpoint, 2026-12-07).
  const std::string segv = test::source_path("tests/fuzz/library_findings/hdf5-H5HG_read-vlen-segv-checkpoint.h5");
  std::vector<float> params(size_t(table.trainable_count()), 0.5f), state(size_t(table.state_count()), 0.5f);
  try {
    load_weights(segv, table, params, state, HeadPolicy::LoadOrInit, 1);
    ADD_FAILURE() << segv << " loaded";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), segv + ": ")) << e.what();
    EXPECT_TRUE(contains(e.what(), "crashed") || contains(e.what(), "abnormally")) << e.what();
  }
  EXPECT_EQ(params, std::vector<float>(params.size(), 0.5f)) << "nothing was loaded";
  // A packed file whose /labels layout is damaged: H5Dread (H5D__select_read, H5VM_memcpyvv) reads
  // from address 0; in-process it kills a Release build with SIGSEGV (fuzz_packed, 2026-12-07).
  const std::string null_read = test::source_path("tests/fuzz/library_findings/hdf5-H5D__select_read-null-read-packed.h5");
  try {
    PackedDataset d(null_read);
    ADD_FAILURE() << null_read << " opened";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), null_read + ": ")) << e.what();
    EXPECT_TRUE(contains(e.what(), "crashed") || contains(e.what(), "abnormally")) << e.what();
  }
  // A weight file whose object header address is damaged: H5F__accum_read (under H5Oget_info) copies
  // from address 0; in-process it kills a Release build with SIGSEGV (fuzz_weights, 2026-12-07).
  const std::string accum = test::source_path("tests/fuzz/library_findings/hdf5-H5F__accum_read-null-read-weights.h5");
  try {
    (void)scan_weight_file(accum);
    ADD_FAILURE() << accum << " scanned";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), accum + ": ")) << e.what();
    EXPECT_TRUE(contains(e.what(), "crashed") || contains(e.what(), "abnormally")) << e.what();
  }
}

// GDCM 3.0.21 as Debian builds it keeps its assertions: these damaged headers abort the process
// in-process. Isolated, each is this file's refusal, and the next file decodes.
TEST_F(IsolatedRead, GdcmsFailedAssertionsAreTheFilesRefusal) {
  // GDCM works for up to seconds on FileMetaInformation_436 before its assertion fails: no deadline.
  ::setenv("CXR_ISOLATE_SECONDS", "120", 1);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(test::source_path("tests/fuzz/library_findings"))) {
    const std::string name = e.path().filename().string();
    if (name.rfind("gdcm-assert-", 0) != 0) continue;
    ++files;
    GreyImage img;
    DicomInfo info;
    std::string error;
    EXPECT_FALSE(decode_dicom(e.path().string(), DicomOptions{}, &img, &info, &error)) << name;
    EXPECT_TRUE(contains(error, "GDCM crashed") || contains(error, "GDCM stopped abnormally")) << name << ": " << error;
  }
  EXPECT_GE(files, 7);
}

TEST_F(IsolatedRead, AnIsolatedDicomDecodeGivesTheInProcessResult) {
  for (const char* name : {"ts_explicit_le.dcm", "ts_jpegls_dcmtk.dcm", "px_16bit.dcm", "zero_rows.dcm"}) {
    const std::string path = test::source_path(std::string("tests/fuzz/corpus/dicom/") + name);
    GreyImage a, b;
    DicomInfo ia, ib, ha, hb;
    std::string ea, eb, wa, wb;
    const bool ok_a = decode_dicom(path, DicomOptions{}, &a, &ia, &ea);
    const bool head_a = read_dicom_info(path, &ha, &wa);
    set_isolated_reads(false);
    const bool ok_b = decode_dicom(path, DicomOptions{}, &b, &ib, &eb);
    const bool head_b = read_dicom_info(path, &hb, &wb);
    set_isolated_reads(true);
    EXPECT_EQ(ok_a, ok_b) << name;
    EXPECT_EQ(ea, eb) << name;
    EXPECT_EQ(head_a, head_b) << name;
    EXPECT_EQ(a.width, b.width) << name;
    EXPECT_EQ(a.height, b.height) << name;
    EXPECT_EQ(a.pixels, b.pixels) << name;
    for (const auto& [x, y] : {std::pair{&ia, &ib}, std::pair{&ha, &hb}}) {
      EXPECT_EQ(x->transfer_syntax, y->transfer_syntax) << name;
      EXPECT_EQ(x->sop_instance_uid, y->sop_instance_uid) << name;
      EXPECT_EQ(x->patient_id, y->patient_id) << name;
      EXPECT_EQ(x->view_position, y->view_position) << name;
      EXPECT_EQ(x->photometric, y->photometric) << name;
      EXPECT_EQ(x->voi, y->voi) << name;
      EXPECT_EQ(x->burned_in_annotation, y->burned_in_annotation) << name;
      EXPECT_EQ(x->rows, y->rows) << name;
      EXPECT_EQ(x->columns, y->columns) << name;
      EXPECT_EQ(x->frames, y->frames) << name;
      EXPECT_EQ(x->samples_per_pixel, y->samples_per_pixel) << name;
      EXPECT_EQ(x->bits_allocated, y->bits_allocated) << name;
      EXPECT_EQ(x->bits_stored, y->bits_stored) << name;
      EXPECT_EQ(x->is_signed, y->is_signed) << name;
    }
  }
}

}  // namespace
}  // namespace cxr::io
