#include "io/fileutil.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "engine/error.h"
#include "io/fault.h"

namespace cxr::io {

std::string temp_path_for(const std::string& path) {
  return path + ".tmp." + std::to_string(static_cast<long>(getpid()));
}

namespace {

// Seconds since the epoch at which process `pid` started, or -1 (from /proc: its start in clock ticks
// after boot, field 22 of /proc/<pid>/stat, placed on the wall clock through /proc/uptime read now:
// to a few hundredths of a second, where /proc/stat's whole-second btime left a second's doubt).
double process_start_time(long pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return -1;
  const size_t close = line.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return -1;
  std::istringstream fields(line.substr(close + 2));
  std::string f;
  for (int k = 3; k < 22 && fields >> f; ++k) {
  }
  unsigned long long ticks = 0;
  if (!(fields >> ticks)) return -1;
  std::ifstream uptime_file("/proc/uptime");
  double uptime = 0;
  if (!(uptime_file >> uptime)) return -1;
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  const double boot = double(now.tv_sec) + double(now.tv_nsec) * 1e-9 - uptime;
  return boot + double(ticks) / double(::sysconf(_SC_CLK_TCK));
}

// Whether the temporary file `file` named after process `pid` may still be written by it: the
// process exists and started before the file was last written (PIDs are reused: a process that
// started later is another one, as the kill tests found with thousands of processes forked beside).
bool writer_alive(long pid, const std::filesystem::path& file) {
  if (::kill(pid_t(pid), 0) != 0 && errno != EPERM) return false;
  struct stat st;
  const double started = process_start_time(pid);
  if (started < 0 || ::stat(file.c_str(), &st) != 0) return true;  // cannot tell: keep it
  // Start times are known to a clock tick and /proc/uptime's hundredth; file times lag the clock by
  // up to a tick (the kernel's coarse clock): 0.05 s covers both. A writer starts long before it
  // writes (cxr loads its libraries first). A one-second margin, as before, kept the temporary
  // file of a killed write whenever its PID was reused within the second (KillCli flaked 2 in 5
  // full runs: pid_max is 32768 and the suite forks thousands of processes).
  const double modified = double(st.st_mtim.tv_sec) + double(st.st_mtim.tv_nsec) * 1e-9;
  return started <= modified + 0.05;
}

}  // namespace

void remove_stale_temps(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const std::string base = p.filename().string();
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    // "<base>.tmp.<pid>" (write_atomically) and ".<base>.tmp-<pid>-<n>" (checkpoints).
    std::string rest;
    if (name.rfind(base + ".tmp.", 0) == 0) rest = name.substr(base.size() + 5);
    else if (name.rfind("." + base + ".tmp-", 0) == 0) rest = name.substr(base.size() + 6);
    else continue;
    const long pid = std::strtol(rest.c_str(), nullptr, 10);
    if (pid <= 0 || pid == long(getpid())) continue;
    if (writer_alive(pid, e.path())) continue;
    fs::remove(e.path(), ec);
  }
}

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  remove_stale_temps(path);
  const std::string tmp = temp_path_for(path);
  try {
    write(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  fault_point("file: written, before the rename");
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot rename temporary file into place: " + ec.message());
  }
  fault_point("file: renamed");
}

void write_text_file(const std::string& path, const std::string& text) {
  write_atomically(path, [&](const std::string& tmp) {
    // stdio rather than a stream: a failed write keeps its errno (a full disk, a file-size limit).
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw Error(path + ": cannot create " + tmp + ": " + std::strerror(errno));
    const bool wrote = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
                       ::fsync(::fileno(f)) == 0;
    const int err = errno;
    if (std::fclose(f) != 0 || !wrote)
      throw Error(path + ": cannot write it: " + std::strerror(wrote ? errno : err) +
                  " (the previous file, if any, is unchanged)");
  });
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open for reading");
  // Read in blocks up to the cap, so that neither a huge file nor an endless one (/dev/zero, a pipe)
  // is taken whole into memory.
  std::string out;
  std::vector<char> block(1 << 16);
  while (f) {
    f.read(block.data(), static_cast<std::streamsize>(block.size()));
    out.append(block.data(), static_cast<size_t>(f.gcount()));
    if (out.size() > max_bytes)
      throw Error(path + ": more than " + std::to_string(max_bytes >> 20) + " MiB: not a text input cxr reads "
                  "(the official label file is 8 MiB)");
  }
  if (f.bad()) throw Error(path + ": read error");
  return out;
}

std::vector<std::string> read_lines(const std::string& path, size_t max_line) {
  std::vector<std::string> lines = split_lines(read_text_file(path));
  for (size_t i = 0; i < lines.size(); ++i)
    if (lines[i].size() > max_line)
      throw Error(path + ":" + std::to_string(i + 1) + ": line of " + std::to_string(lines[i].size()) +
                  " bytes, more than " + std::to_string(max_line >> 10) + " KiB: not a CSV row or list line");
  return lines;
}

std::string quote_for_message(const std::string& s, size_t limit, bool with_length) {
  const bool cut = s.size() > limit;
  const std::string q = "'" + (cut ? s.substr(0, limit) + "..." : s) + "'";
  return cut || with_length ? q + " (" + std::to_string(s.size()) + " chars)" : q;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  // A UTF-8 byte-order mark (Excel's "CSV UTF-8" starts every file with one) is no part of line 1.
  size_t start = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    size_t len = end - start;
    if (len > 0 && text[start + len - 1] == '\r') --len;
    lines.emplace_back(text, start, len);
    start = end + 1;
  }
  return lines;
}

std::string join_list(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& x : items) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace cxr::io
