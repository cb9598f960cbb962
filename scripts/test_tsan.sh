#!/usr/bin/env bash
# ThreadSanitizer run of the loader's background threads (RELIABILITY.md): the CPU build with
# -fsanitize=thread in build-tsan/ (CUDA off), then the loader's and the packed reader's tests. Not in
# CI (a second sanitizer build would double its time); run by hand after scripts/setup.sh --tests.
# OpenMP is held to one thread: libgomp is not instrumented, so its own synchronisation would be
# reported (DataPacked.DirectReadsMatchHdf5 reads through an `omp parallel for` of 4 threads and is
# reported at the loop's join for that reason); the loader's helper threads are std::threads and are
# what this run checks.
set -euo pipefail
cd "$(dirname "$0")/.."
flags="-fsanitize=thread -fno-omit-frame-pointer"
# GCC 12's TSan runtime crashes at start under the kernel's full mmap randomisation (a known
# incompatibility: "unexpected memory mapping", or a bare SIGSEGV); every run of a TSan binary,
# the test discovery's included (CMAKE_CROSSCOMPILING_EMULATOR), goes through `setarch -R`.
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCXR_CUDA=OFF -DCXR_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" \
  "-DCMAKE_CROSSCOMPILING_EMULATOR=setarch;$(uname -m);-R" >&2
cmake --build build-tsan -j"$(nproc)" --target cxr_tests >&2
export OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
setarch "$(uname -m)" -R build-tsan/tests/cxr_tests --gtest_filter="${1:-DataLoader*:DataNormalize*:Checksums.AFlippedImage*}"
