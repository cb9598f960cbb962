// Random inputs for timing a step (cxr bench, cxr profile): the speed does not depend on the values.
#pragma once
#include <cstdint>

#include "engine/model.h"

namespace cxr::app {

// Normal inputs, labels positive with probability 0.2 (fixed seed), and loss weights from the batch's
// label frequencies, copied into the model's input buffers (synchronised).
void upload_random_step_inputs(DenseNet& net, uint64_t seed);

}  // namespace cxr::app
