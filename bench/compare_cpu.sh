#!/usr/bin/env bash
# Side by side on this machine, in one run: a DenseNet121 training step (forward, weighted BCE,
# backward; no optimizer update on either side) in cxr and in PyTorch on the CPU, alternating
# per configuration, each in a fresh process (peak RSS is per process). Prints a table last.
#
#   bench/compare_cpu.sh [THREADS]
#
# Needs build/tools/cxr (scripts/setup.sh) and a PyTorch venv (bench/requirements-torch.txt), found
# at $TORCH_PYTHON (default /work/venv-torch/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-$(nproc)}"
py="${TORCH_PYTHON:-/work/venv-torch/bin/python}"
cxr=./build/tools/cxr
out=$(mktemp -d)
export OMP_NUM_THREADS="$threads"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for cfg in "8 128 10 2" "32 320 3 1"; do
  set -- $cfg
  "$cxr" bench --device cpu --batch "$1" --size "$2" --steps "$3" --warmup "$4" --json >"$out/cxr_$1_$2.json"
  "$py" bench/pytorch_train_step.py --batch "$1" --size "$2" --steps "$3" --warmup "$4" --threads "$threads" \
    --no-optimizer --json >"$out/torch_$1_$2.json"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" "$threads" <<'PY'
import json, sys
out, threads = sys.argv[1], sys.argv[2]
print(f"\nDenseNet121 training step on the CPU ({threads} threads): images/s (median step) and peak RSS")
print(f"{'batch/size':12s} {'cxr img/s':>10s} {'torch img/s':>12s} {'ratio':>6s} {'cxr peak':>10s} {'torch peak':>11s} {'ratio':>6s}")
for b, s in [(8, 128), (32, 320)]:
    c = json.load(open(f"{out}/cxr_{b}_{s}.json"))
    t = json.load(open(f"{out}/torch_{b}_{s}.json"))
    ci, ti = c["images_per_second"], t["images_per_second"]
    cp, tp = c["peak_bytes"] / 2**30, t["peak_rss_bytes"] / 2**30
    print(f"{b:>3d} / {s:<6d} {ci:10.2f} {ti:12.2f} {ci / ti:6.2f} {cp:8.2f} GiB {tp:8.2f} GiB {cp / tp:6.2f}")
print(f"(torch {t.get('torch_version', '?')}; its peak includes a {t['baseline_rss_bytes'] / 2**30:.2f} GiB "
      f"baseline after import; cxr's includes its own, {c['rss_before_model_bytes'] / 2**20:.0f} MiB)")
PY
