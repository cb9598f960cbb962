// The model of the HDF5 fuzz targets' seeds (tests/fuzz/make_hdf5_seeds.cpp): a DenseNet of one dense
// layer in one block, 2 classes, every width 4 or less, so that a whole weight file or checkpoint is a
// few tens of KB and the fuzzer mutates its structure rather than spending its time in float data.
#pragma once
#include "engine/model.h"
#include "io/weights.h"

namespace cxr::fuzz {

inline DenseNetConfig tiny_config() {
  DenseNetConfig c;
  c.arch = "densenet";
  c.blocks = {1};
  c.growth = 2, c.bottleneck = 4, c.stem = 4, c.classes = 2;
  return c;
}

inline const ParamTable& tiny_table() {
  static const ParamTable table = io::densenet_param_table(tiny_config());
  return table;
}

}  // namespace cxr::fuzz
