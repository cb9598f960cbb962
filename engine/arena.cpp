#include "engine/arena.h"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace cxr {

const char* category_name(MemCategory c) {
  switch (c) {
    case MemCategory::Parameters: return "parameters";
    case MemCategory::Gradients: return "gradients";
    case MemCategory::OptimizerState: return "optimizer state";
    case MemCategory::BnState: return "batch-norm statistics";
    case MemCategory::Activations: return "activations kept for backward";
    case MemCategory::Recompute: return "recomputation buffers";
    case MemCategory::Workspace: return "workspace";
    case MemCategory::Input: return "input batch";
    case MemCategory::Count: break;
  }
  return "?";
}

MemoryPlan::Id MemoryPlan::add(std::string name, MemCategory category, size_t bytes) {
  entries_.push_back(Entry{std::move(name), category, 0, bytes});
  relayout();
  return entries_.size() - 1;
}

void MemoryPlan::grow(Id id, size_t bytes) {
  if (bytes > entries_.at(id).bytes) {
    entries_[id].bytes = bytes;
    relayout();
  }
}

void MemoryPlan::relayout() {
  size_t off = 0;
  for (auto& e : entries_) {
    e.offset = off;
    off += (e.bytes + kAlign - 1) / kAlign * kAlign;
  }
}

size_t MemoryPlan::total_bytes() const {
  if (entries_.empty()) return 0;
  const auto& e = entries_.back();
  return e.offset + (e.bytes + kAlign - 1) / kAlign * kAlign;
}

size_t MemoryPlan::category_bytes(MemCategory c) const {
  size_t s = 0;
  for (const auto& e : entries_)
    if (e.category == c) s += (e.bytes + kAlign - 1) / kAlign * kAlign;
  return s;
}

Arena::Arena(Backend& backend, const MemoryPlan& plan) : backend_(backend), plan_(plan) {
  bytes_ = plan.total_bytes();
  base_ = static_cast<char*>(backend_.allocate(bytes_));
}

Arena::~Arena() { backend_.release(base_); }

void* Arena::ptr(MemoryPlan::Id id) const {
  const auto& e = plan_.entry(id);
  CXR_CHECK(e.offset + e.bytes <= bytes_, "buffer '", e.name, "' lies outside the arena");
  return base_ + e.offset;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}

size_t parse_bytes(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) CXR_FAIL("size '", text, "': expected a number with an optional K, M, G or T suffix");
  const double v = std::stod(text.substr(0, i));
  std::string suffix = text.substr(i);
  if (!suffix.empty() && (suffix.back() == 'B' || suffix.back() == 'b')) suffix.pop_back();
  if (suffix.size() > 1 && (suffix.back() == 'i')) suffix.pop_back();
  double mult = 1;
  if (suffix.empty()) mult = 1;
  else if (suffix == "K" || suffix == "k") mult = 1024.0;
  else if (suffix == "M" || suffix == "m") mult = 1024.0 * 1024;
  else if (suffix == "G" || suffix == "g") mult = 1024.0 * 1024 * 1024;
  else if (suffix == "T" || suffix == "t") mult = 1024.0 * 1024 * 1024 * 1024;
  else CXR_FAIL("size '", text, "': unknown suffix '", suffix, "' (expected K, M, G or T)");
  return size_t(std::llround(v * mult));
}

}  // namespace cxr
