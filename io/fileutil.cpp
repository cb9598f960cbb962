#include "io/fileutil.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/error.h"

namespace cxr::io {

std::string temp_path_for(const std::string& path) {
  return path + ".tmp." + std::to_string(static_cast<long>(getpid()));
}

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  const std::string tmp = temp_path_for(path);
  try {
    write(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot rename temporary file into place: " + ec.message());
  }
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

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open for reading");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
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

}  // namespace cxr::io
