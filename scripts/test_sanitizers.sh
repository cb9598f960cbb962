#!/usr/bin/env bash
# The CPU test suite built with AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer on), in
# its own build folder (build-asan/, CUDA off): any report fails the run. Run after scripts/setup.sh
# --tests (scripts/test.sh does it), as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCXR_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >&2
cmake --build build-asan -j"$(nproc)" --target cxr cxr_tests >&2
cd build-asan
# detect_leaks: LeakSanitizer; abort_on_error off so gtest's exit status carries the failure.
export ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:check_initialization_order=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --output-on-failure -j"$(nproc)" -E "${CXR_ASAN_EXCLUDE:-^$}"
