// DICOM fixtures made at test time by tests/fixtures/make_dicom_fixtures.py from a real NIH image
// (pydicom, DCMTK and GDCM's tools as writers), shared by the DICOM tests.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_data_util.h"
#include "test_util.h"

namespace cxr::test {

// A Python with pydicom, numpy and PIL and the DCMTK and GDCM tools the script runs; "" and *why otherwise.
inline std::string dicom_fixture_python(std::string* why) {
  std::vector<std::string> candidates;
  if (const char* p = std::getenv("CXR_FIXTURE_PYTHON")) candidates.push_back(p);
  candidates.insert(candidates.end(), {"/usr/bin/python3", "python3"});
  for (const auto& py : candidates)
    if (std::system(("'" + py + "' -c 'import pydicom, numpy, PIL' >/dev/null 2>&1").c_str()) == 0) {
      if (std::system("command -v dcmcjpeg >/dev/null && command -v gdcmconv >/dev/null") != 0) {
        *why = "no DCMTK or GDCM command-line tools (Debian's dcmtk and libgdcm-tools)";
        return "";
      }
      return py;
    }
  *why = "no Python with pydicom, numpy and PIL (Debian's python3-pydicom, python3-pil)";
  return "";
}

// The fixtures (generated_fixture_dir); "" and *why when they cannot be made here (*no_tools: because
// a tool that scripts/setup.sh --tests installs is missing, rather than the real data).
inline std::string dicom_fixture_dir(std::string* why, bool* no_tools) {
  const std::string src = shared_path("data/nih-512/00000001_000.png");
  if (src.empty()) {
    *why = "../shared/data/nih-512 is absent (the real NIH image the fixtures are made from)";
    return "";
  }
  const std::string py = dicom_fixture_python(why);
  *no_tools = py.empty();
  if (py.empty()) return "";
  const std::string script = source_path("tests/fixtures/make_dicom_fixtures.py");
  const std::string cmd = "'" + py + "' '" + script + "' --quiet --src '" + src + "' --out '{out}'";
  const std::string dir = generated_fixture_dir(
      "cxr_dicom_fixtures", std::to_string(std::hash<std::string>{}(read_all(script))), cmd);
  if (dir.empty()) *why = "the fixture script failed: " + cmd, *no_tools = true;
  return dir;
}

template <typename T>
std::vector<T> read_raw(const std::string& path, size_t n) {
  std::vector<T> v(n);
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
  EXPECT_TRUE(f.good()) << path;
  return v;
}

// Declares `dir` and `files` (the manifest's entries), or skips. Missing tools that scripts/setup.sh
// --tests installs fail the test in CI ($CI set), where a skip would hide that nothing was checked.
#define CXR_NEED_FIXTURES(dir)                                                  \
  std::string why_;                                                             \
  bool no_tools_ = false;                                                       \
  const std::string dir = ::cxr::test::dicom_fixture_dir(&why_, &no_tools_);    \
  if (dir.empty()) {                                                            \
    if (no_tools_ && std::getenv("CI")) FAIL() << why_;                         \
    GTEST_SKIP() << why_;                                                       \
  }                                                                             \
  const nlohmann::json manifest_ = ::cxr::test::dicom_manifest(dir);            \
  [[maybe_unused]] const nlohmann::json& files = manifest_["files"]

inline nlohmann::json dicom_manifest(const std::string& dir) {
  return nlohmann::json::parse(read_all(dir + "/manifest.json"));
}

}  // namespace cxr::test
