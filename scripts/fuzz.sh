#!/usr/bin/env bash
# Fuzzes each reader with libFuzzer (clang, ASan + UBSan) for SECONDS (default 60) per target:
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   targets (tests/fuzz/): label_csv bbox_csv split_lists png jpeg weights checkpoint packed dicom
# Builds build-fuzz/ (CUDA off), starts from the committed seeds in tests/fuzz/corpus/<target> and
# keeps what it learns in build-fuzz/corpus/<target>; a crash, leak, timeout or out-of-memory
# input lands in build-fuzz/findings/<target>/ and the script exits non-zero. Each target's last
# libFuzzer status line (executions, coverage) is printed; RELIABILITY.md records the runs.
# With KEEP_GOING=1 a target runs its whole time in libFuzzer's fork mode, collecting every crash,
# timeout and out-of-memory input in build-fuzz/findings/<target>/ instead of stopping at the
# first: for the readers whose findings lie in the libraries below them (libhdf5, GDCM), so that
# the campaign measures more than the first one. Triage with the replay programs (build/tests/fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(label_csv bbox_csv split_lists png jpeg weights checkpoint packed dicom)
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCXR_CUDA=OFF -DCXR_FUZZ=ON \
  -DCXR_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >&2
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/#/fuzz_}" >&2
status=0
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t" "build-fuzz/findings/$t"
  log="build-fuzz/fuzz_$t.log"
  # Text readers get the CSV dictionary, HDF5 readers the HDF5 one and room for their seeds
  # (tens of KB); image and DICOM inputs are kept under 64 KiB.
  extra=(-max_len=65536)
  case $t in
    label_csv | bbox_csv | split_lists) extra+=(-dict=tests/fuzz/csv.dict) ;;
    weights | checkpoint | packed) extra=(-max_len=262144 -dict=tests/fuzz/hdf5.dict) ;;
  esac
  [ "${KEEP_GOING:-0}" = 1 ] && extra+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  if ! ASAN_OPTIONS=detect_leaks=1 "build-fuzz/tests/fuzz/fuzz_$t" "build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 "${extra[@]}" -print_final_stats=1 \
      -artifact_prefix="build-fuzz/findings/$t/" >"$log" 2>&1; then
    status=1
    echo "$t: FINDING (see $log and build-fuzz/findings/$t/)"
  fi
  echo "$t: $(grep -E "^#[0-9]+" "$log" | tail -1 || true)"
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$log" | sed "s/^/$t: /"  || true
done
exit $status
