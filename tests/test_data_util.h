// Helpers for the data-pipeline and command-line tests: a scratch directory removed at the end of
// the test, writing small text files, and running the built `cxr` binary.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include <filesystem>
#include <fstream>
#include <string>

namespace cxr::test {

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    path_ = (std::filesystem::temp_directory_path() /
             ("cxr_" + name + "_" + std::to_string(static_cast<long>(getpid()))))
                .string();
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

inline std::string cxr_binary() {
  const char* env = std::getenv("CXR_BINARY");
  if (env && *env) return env;
#ifdef CXR_BINARY
  return CXR_BINARY;
#else
  return "";
#endif
}

struct RunResult {
  int status = -1;  // exit code
  std::string out, err;
};

inline std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs `cxr args` with stdout and stderr captured in files of `dir`.
inline RunResult run_cxr(const ScratchDir& dir, const std::string& args) {
  const std::string out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string cmd = "'" + cxr_binary() + "' " + args + " >'" + out + "' 2>'" + err + "'";
  const int rc = std::system(cmd.c_str());
  RunResult r;
  r.status = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = read_all(out);
  r.err = read_all(err);
  return r;
}

}  // namespace cxr::test
