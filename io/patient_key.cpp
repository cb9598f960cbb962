#include "io/patient_key.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "engine/error.h"
#include "io/fileutil.h"

namespace cxr::io {

std::string hash_patient_id(const std::string& id, const std::string& key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  CXR_CHECK(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                 reinterpret_cast<const unsigned char*>(id.data()), id.size(), md, &len) != nullptr && len >= 16,
            "HMAC-SHA256 failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < 16; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::string read_patient_key_file(const std::string& path) {
  std::string key = read_text_file(path);
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  if (key.size() < 16)
    throw Error(path + ": the key of --hash-patient-ids has " + std::to_string(key.size()) +
                " bytes, expected at least 16 (e.g. `head -c 32 /dev/urandom | base64 > " + path + "`)");
  return key;
}

int64_t patient_number(const std::string& text) {
  if (!text.empty() && text.size() <= 18 && text.find_first_not_of("0123456789") == std::string::npos) {
    const int64_t v = std::stoll(text);
    if (v > 0) return v;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  CXR_CHECK(EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr) == 1, "SHA-256 failed");
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | md[i];
  v &= 0x7fffffffffffffffull;
  return v == 0 ? 1 : static_cast<int64_t>(v);
}

}  // namespace cxr::io
