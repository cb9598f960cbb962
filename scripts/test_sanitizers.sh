#!/usr/bin/env bash
# The CPU test suite built with AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer on), in
# its own build folder (build-asan/, CUDA off): any report fails the run. Run after scripts/setup.sh
# --tests (scripts/test.sh does it), as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCXR_CUDA=OFF -DCXR_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >&2
cmake --build build-asan -j"$(nproc)" >&2
cd build-asan
# detect_leaks: LeakSanitizer (tests/sanitizers/lsan.supp lists the libraries' own caches).
# allocator_may_return_null: an impossible allocation throws std::bad_alloc, as without ASan (the
# engine's out-of-memory test asks for terabytes on purpose).
export ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:check_initialization_order=1:allocator_may_return_null=1
export LSAN_OPTIONS=suppressions=$PWD/../tests/sanitizers/lsan.supp
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --output-on-failure -j"$(nproc)" -E "${CXR_ASAN_EXCLUDE:-^$}"
