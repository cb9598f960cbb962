// Fault injection for the crash-safety tests (RELIABILITY.md, "killed at any moment"): each write step
// of our files calls fault_point(name). With CXR_FAULT_KILL_AT=N in the environment the process kills
// itself (SIGKILL: no handler, no flush, no destructor runs) at the Nth point; with CXR_FAULT_LOG=FILE
// each point's name is appended to FILE first (the tests count and name the points this way).
// Without either variable a point costs one branch.
#pragma once

namespace cxr::io {

void fault_point(const char* name);

// For the data-parallel failure tests: with CXR_FAULT_STEP=N:kill in a rank's environment the rank
// kills itself (SIGKILL) as training step N starts; with N:hang it stops there for good (sleeps, as a
// rank on a hung filesystem or a deadlocked driver would) without exiting. Without the variable a
// call costs one branch.
void step_fault(long step);

}  // namespace cxr::io
