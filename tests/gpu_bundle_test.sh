#!/usr/bin/env bash
# The GPU bundle of scripts/gpu_bundle.sh, built from this build's binaries (no rebuild): archived
# and unpacked, its binaries start with only the bundle on LD_LIBRARY_PATH (and the toolkit's CUDA
# libraries, which the GPU machine has from PyTorch's wheels), every library but glibc's and CUDA's
# resolves inside it, and none of glibc's travels. Exit 77 (skipped) without the CUDA backend.
#   tests/gpu_bundle_test.sh BUILD_DIR HAVE_CUDA(ON|OFF)
set -euo pipefail
build=$1
if [ "${2:-OFF}" != ON ]; then
  echo "skipped: this build has no CUDA backend, so there is no GPU bundle to check"
  exit 77
fi
source "$(dirname "$0")/../scripts/gpu_bundle.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bins=("$build/tools/cxr" "$build/tests/cxr_tests")
for b in "$build/bench/bench_train_step" "$build/bench/bench_kernels"; do [ -x "$b" ] && bins+=("$b"); done
bundle_binaries "$work/bundle" "${bins[@]}"
XZ_OPT=-0 archive_bundle "$work/bundle" "$work/bundle.tar.xz"  # fastest level: this checks the round trip
mkdir "$work/unpacked" && tar -C "$work/unpacked" -xJf "$work/bundle.tar.xz"
check_bundle "$work/unpacked"
only_bundle=(env -i PATH="$PATH" LD_LIBRARY_PATH="$work/unpacked/lib:/usr/local/cuda/lib64")
"${only_bundle[@]}" "$work/unpacked/bin/cxr" --version
"${only_bundle[@]}" "$work/unpacked/bin/cxr_tests" --gtest_list_tests --gtest_filter='CudaBackend.*' | tail -n +2
# The check itself must catch a glibc library in the bundle and a library that resolves outside it.
cp -L "$(ldconfig -p | awk '/libm\.so\.6 .*x86-64/ {print $NF; exit}')" "$work/unpacked/lib/libm.so.6"
rm "$work/unpacked/lib/libopenblas.so.0"
if check_bundle "$work/unpacked" >"$work/expected_problems.txt"; then
  echo "check_bundle accepted a bundle with glibc's libm and without OpenBLAS" && exit 1
fi
grep -q "libm.so.6 is in the bundle" "$work/expected_problems.txt"
grep -q "resolves libopenblas.so.0 to .*, outside the bundle" "$work/expected_problems.txt"
echo "bundle of ${#bins[@]} binaries and $(ls "$work/unpacked/lib" | wc -l) libraries ($(du -sh "$work/bundle.tar.xz" | cut -f1) archived): resolves inside itself"
