#!/usr/bin/env bash
# Fuzzes each reader with libFuzzer (clang, ASan + UBSan) for SECONDS (default 60) per target:
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: label_csv bbox_csv png (tests/fuzz/)
# Builds build-fuzz/ (CUDA off), starts from the committed seeds in tests/fuzz/corpus/<target> and
# keeps what it learns in build-fuzz/corpus/<target>; a crash, leak, timeout or out-of-memory
# input lands in build-fuzz/findings/<target>/ and the script exits non-zero. Each target's last
# libFuzzer status line (executions, coverage) is printed; RELIABILITY.md records the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(label_csv bbox_csv png)
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCXR_CUDA=OFF -DCXR_FUZZ=ON \
  -DCXR_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >&2
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/#/fuzz_}" >&2
status=0
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t" "build-fuzz/findings/$t"
  log="build-fuzz/fuzz_$t.log"
  if ! ASAN_OPTIONS=detect_leaks=1 "build-fuzz/tests/fuzz/fuzz_$t" "build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="build-fuzz/findings/$t/" >"$log" 2>&1; then
    status=1
    echo "$t: FINDING (see $log and build-fuzz/findings/$t/)"
  fi
  echo "$t: $(grep -E '^#[0-9]+' "$log" | tail -1)"
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$log" | sed "s/^/$t: /"
done
exit $status
