// Small file helpers shared by the io library: atomic writes (temporary file in the same directory,
// then rename) and line splitting.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace cxr::io {

// "<path>.tmp.<pid>": a temporary name in the same directory as path (so rename is atomic).
std::string temp_path_for(const std::string& path);

// Removes temporary files that writes of `path` by processes no longer alive left behind (a kill
// leaves "<path>.tmp.<pid>" or a checkpoint's ".<name>.tmp-<pid>-<n>"); a live writer's are kept.
void remove_stale_temps(const std::string& path);

// Calls write(tmp_path), then renames tmp_path to path. Removes the temporary file on failure, and
// first the stale ones of earlier, killed writes (remove_stale_temps).
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

// Writes text to path atomically.
void write_text_file(const std::string& path, const std::string& text);

// Reads a whole file; throws cxr::Error naming the path when it cannot be read.
// The whole file; refused (naming it) past max_bytes, which keeps a hostile or mistaken input
// (/dev/zero, a 50 GB file) from being taken into memory.
inline constexpr size_t kMaxTextFileBytes = size_t(1) << 30;
std::string read_text_file(const std::string& path, size_t max_bytes = kMaxTextFileBytes);
// Its lines (split_lines), each at most max_line bytes (an official label row is under 200 bytes; a
// line of a megabyte is not a row): refused naming the file and the line.
inline constexpr size_t kMaxLineBytes = size_t(1) << 20;
std::vector<std::string> read_lines(const std::string& path, size_t max_line = kMaxLineBytes);

// "a, b, c": a list for a message (the choices an option takes).
std::string join_list(const std::vector<std::string>& items);

// Splits text into lines (LF or CRLF), keeping empty lines so that index+1 is the line number.
std::vector<std::string> split_lines(const std::string& text);  // \n or \r\n; a leading UTF-8 BOM is dropped
// A name or field from an input file as an error message shows it: quoted, cut after `limit`
// characters (a hostile file's field of megabytes is not echoed), and followed by its length when
// cut or when `with_length` (so a truncated name or an encoding problem shows at a glance).
std::string quote_for_message(const std::string& s, size_t limit, bool with_length);

}  // namespace cxr::io
