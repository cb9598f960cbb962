// Text Patient IDs (DICOM's (0010,0020), hospital label files) for patient-wise splits and the packed
// file: a keyed hash that keeps the ID out of every output, and the integer the splitter groups by.
#pragma once
#include <cstdint>
#include <string>

namespace cxr::io {

// HMAC-SHA256 (OpenSSL) of `id` under `key`, as 32 hex digits (the first 128 bits): the same ID gives
// the same text under one key, so splits stay patient-wise, and without the key the ID cannot be
// recovered by hashing candidate IDs.
std::string hash_patient_id(const std::string& id, const std::string& key);

// The key of --hash-patient-ids: the bytes of `path`, a trailing newline removed; at least 16 bytes.
// Throws cxr::Error naming the file otherwise.
std::string read_patient_key_file(const std::string& path);

// The integer a text ID is split by: the number itself for 1 to 18 decimal digits, else 63 bits of
// the text's SHA-256 (never 0 or negative).
int64_t patient_number(const std::string& text);

}  // namespace cxr::io
