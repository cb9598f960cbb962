// Memory planning: every buffer the network needs (activations kept for backward, recomputation
// scratch, workspaces, parameters, gradients, ...) is declared once, with a category, while the
// model is assembled; the arena then makes ONE allocation of the plan's total on the backend.
// Forward and backward never allocate: they only resolve planned buffers to pointers.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "engine/backend.h"

namespace cxr {

enum class MemCategory {
  Parameters,      // trainable weights (one flat buffer)
  Gradients,       // their gradients (one flat buffer)
  OptimizerState,  // e.g. Adam moments
  BnState,         // running statistics and per-step batch statistics
  Activations,     // kept from forward for backward
  Recompute,       // scratch where backward recomputes BN-ReLU outputs and holds gradients
  Workspace,       // convolution workspace (im2col columns or cuDNN workspace)
  Input,           // the input batch, labels and loss weights
  Count
};
const char* category_name(MemCategory c);

class MemoryPlan {
 public:
  struct Entry {
    std::string name;
    MemCategory category;
    size_t offset;  // bytes from the arena's base, 256-aligned
    size_t bytes;
  };
  using Id = size_t;
  static constexpr size_t kAlign = 256;

  Id add(std::string name, MemCategory category, size_t bytes);
  Id add_floats(std::string name, MemCategory category, int64_t count) {
    return add(std::move(name), category, sizeof(float) * size_t(count));
  }
  // Grows an entry (only before the arena is created); used for "max over all uses" buffers.
  void grow(Id id, size_t bytes);

  size_t total_bytes() const;
  size_t category_bytes(MemCategory c) const;
  const std::vector<Entry>& entries() const { return entries_; }
  const Entry& entry(Id id) const { return entries_.at(id); }

 private:
  void relayout();
  std::vector<Entry> entries_;
};

class Arena {
 public:
  Arena(Backend& backend, const MemoryPlan& plan);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void* ptr(MemoryPlan::Id id) const;
  float* floats(MemoryPlan::Id id) const { return static_cast<float*>(ptr(id)); }
  size_t bytes() const { return bytes_; }

 private:
  Backend& backend_;
  const MemoryPlan& plan_;
  char* base_ = nullptr;
  size_t bytes_ = 0;
};

// "1.23 GiB"-style rendering and parsing of "12G", "512M", "4096".
std::string format_bytes(double bytes);
size_t parse_bytes(const std::string& text);

}  // namespace cxr
