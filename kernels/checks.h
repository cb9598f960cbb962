// Argument validation shared by the CPU and CUDA backends: each throws naming every shape involved.
#pragma once
#include "engine/backend.h"

namespace cxr {
void check_conv_shapes(const Shape& y, const Shape& x, const Shape& w, const ConvGeom& g, const char* op);
void check_pool_shapes(const Shape& y, const Shape& x, const PoolGeom& g, const char* op);
void check_plane_contiguous(const Tensor& t, const char* what);
}  // namespace cxr
