#!/usr/bin/env bash
# Endurance (RELIABILITY.md, "memory stays flat"): samples the resident memory (VmRSS) of
#   1. `cxr train` for STEPS optimizer steps (default 2000: 20 epochs of STEPS/20, batch 4, 32x32,
#      CPU, a validation pass and two checkpoint writes every epoch; 300 synthetic patients give
#      the 400 training images 100 steps of 4 need), and
#   2. `cxr predict` over IMAGES images (default 10000: a .txt list naming the synthetic PNGs again
#      and again), batch 16,
# every 0.2 s into OUT/{train,predict}_rss.csv (milliseconds, KiB), and says for each whether it stayed
# flat: the median of the last tenth of the run against the median of its second tenth (the first
# is warm-up: allocator arenas, HDF5 caches, the first checkpoint) must not grow by more than
# max(8 MiB, 3%). Why that margin: a leak of 4 KiB a training step (one small tensor header) is
# 8 MiB over 2,000 steps and fails; glibc's arenas round up and down by a few MiB as threads come and
# go, which must not. Also printed: the largest sample and the least-squares slope after warm-up.
#   scripts/endurance.sh [OUT]        (default build/endurance; needs build/tools/cxr)
# Exit status 1 when either run grew beyond the margin (or failed).
set -euo pipefail
cd "$(dirname "$0")/.."
cxr=${CXR:-build/tools/cxr}
out=${1:-build/endurance}
steps=${STEPS:-2000}
images=${IMAGES:-10000}
[ -x "$cxr" ] || { echo "endurance: $cxr not built (scripts/setup.sh first)" >&2; exit 2; }
rm -rf "$out" && mkdir -p "$out"

# Runs "$@" in the background, samples its VmRSS until it exits, returns its exit status.
sampled() {
  local csv=$1
  shift
  "$@" &
  local pid=$! t0
  t0=$(date +%s%N)
  echo "ms,rss_kib" >"$csv"
  while kill -0 "$pid" 2>/dev/null; do
    local rss
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$rss" ] && echo "$((($(date +%s%N) - t0) / 1000000)),$rss" >>"$csv"
    sleep 0.2
  done
  wait "$pid"
}

"$cxr" synth --out "$out/synth" --patients 300 --size 32 --seed 5 >/dev/null
"$cxr" prepare --csv "$out/synth/Data_Entry_2017_v2020.csv" --images "$out/synth/images" --out "$out/d.h5" \
  --size 32 --quiet >/dev/null
per_epoch=$((steps / 20))
status=0
sampled "$out/train_rss.csv" "$cxr" train --data "$out/d.h5" --out "$out/run" --device cpu --epochs 20 --batch 4 \
  --max-steps-per-epoch "$per_epoch" --log-every "$per_epoch" --seed 1 --quiet || status=1
find "$out/synth/images" -name '*.png' | sort >"$out/names.txt"
n=$(wc -l <"$out/names.txt")
for _ in $(seq $(((images + n - 1) / n))); do cat "$out/names.txt"; done | head -n "$images" >"$out/list.txt"
sampled "$out/predict_rss.csv" "$cxr" predict --weights "$out/run/last.h5" --out "$out/predictions.csv" --device cpu \
  --batch 16 "$out/list.txt" 2>/dev/null || status=1
steps_done=$(tail -1 "$out/run/metrics.jsonl" | sed -n 's/.*"step":\([0-9]*\).*/\1/p')
rows=$(($(wc -l <"$out/predictions.csv") - 1))
echo "train: $steps steps asked ($per_epoch an epoch x 20), $steps_done taken; predict: $rows rows"
python3 - "$out/train_rss.csv" "$out/predict_rss.csv" <<'PY' || status=1
import statistics, sys
bad = 0
for path in sys.argv[1:]:
    rows = [tuple(map(float, l.split(","))) for l in open(path).read().split("\n")[1:] if l]
    t = [r[0] / 1000 for r in rows]; kib = [r[1] for r in rows]
    n = len(kib)
    if n < 20:
        print(f"{path}: only {n} samples"); bad = 1; continue
    base = statistics.median(kib[n // 10: n // 5])
    end = statistics.median(kib[-(n // 10):])
    after = list(zip(t[n // 10:], kib[n // 10:]))
    mt = statistics.mean(x for x, _ in after); mk = statistics.mean(y for _, y in after)
    slope = sum((x - mt) * (y - mk) for x, y in after) / sum((x - mt) ** 2 for x, _ in after)
    margin = max(8 * 1024, 0.03 * base)
    ok = end - base <= margin
    bad |= not ok
    print(f"{path}: {n} samples over {t[-1]:.0f} s; RSS second tenth {base / 1024:.1f} MiB, last tenth "
          f"{end / 1024:.1f} MiB (growth {(end - base) / 1024:+.1f} MiB, margin {margin / 1024:.1f} MiB), "
          f"max after warm-up {max(k for _, k in after) / 1024:.1f} MiB, slope {slope:+.1f} KiB/s: "
          f"{'flat' if ok else 'GREW'}")
sys.exit(bad)
PY
exit $status
