#!/usr/bin/env bash
# Real data, side by side with a reference: trains DenseNet121 on the 868-image NIH sample in
# ../shared/data/nih-sample-64 (patient-wise 60/40 train/validation split, so that the validation
# AUC rests on ~350 images; images upsampled to 128x128) with cxr and
# with PyTorch on the CPU from the same initial weights, on the same batches, with the same recipe,
# and prints both sides' per-class validation AUCs. Results go to VALIDATION.md by hand.
#
#   scripts/validate_nih.sh [OUT_DIR] [EPOCHS]
#
# Two float32 implementations of the same step differ in rounding (~1e-6), and Adam's first steps
# move each weight by about lr * sign(gradient), so weights whose gradient is near 0 take different
# steps on the two sides and the runs drift apart. To show how much of the final difference is that
# drift and nothing else, PyTorch is also run a second time with 1 thread instead of 2 (a different
# summation order in PyTorch alone), and both differences are printed.
#
# Needs build/tools/cxr (scripts/setup.sh) and a Python with torch, torchvision, h5py and
# scikit-learn at $TORCH_PYTHON (default /work/venv-torch/bin/python; see bench/requirements-torch.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-validate-nih}"
epochs="${2:-4}"
py="${TORCH_PYTHON:-/work/venv-torch/bin/python}"
src=../shared/data/nih-sample-64
[ -d "$src/images" ] || { echo "validate_nih: $src not found (the real NIH sample)" >&2; exit 2; }
cxr=./build/tools/cxr
rm -rf "$out" && mkdir -p "$out"
"$cxr" prepare --csv "$src/Data_Entry_2017_v2020.csv" --images "$src/images" --out "$out/data.h5" \
  --size 128 --split 0.6,0.4,0 --seed 1 --quiet >/dev/null
"$cxr" train --data "$out/data.h5" --out "$out/cxr" --device cpu --epochs "$epochs" --batch 16 --lr 1e-4 \
  --plateau-patience 1000 --seed 1 --save-initial --log-batches --log-every 1000
"$py" scripts/torch_replay.py --data "$out/data.h5" --run "$out/cxr" --threads 2 >"$out/torch.json"
"$py" scripts/torch_replay.py --data "$out/data.h5" --run "$out/cxr" --threads 1 >"$out/torch1.json"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
names = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
         "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
ours = [json.loads(l) for l in open(f"{out}/cxr/metrics.jsonl") if '"type":"epoch"' in l]
torch = json.load(open(f"{out}/torch.json"))
torch1 = json.load(open(f"{out}/torch1.json"))
print(f"{'epoch':>5s} {'cxr val mean AUC':>17s} {'PyTorch':>8s} {'cxr-PyTorch':>12s} {'PyTorch 1 thread':>17s} {'PyTorch 2-1 threads':>20s}")
for o, t, t1 in zip(ours, torch, torch1):
    print(f"{o['epoch']:5d} {o['val_mean_auc']:17.4f} {t['val_mean_auc']:8.4f} {o['val_mean_auc'] - t['val_mean_auc']:+12.4f}"
          f" {t1['val_mean_auc']:17.4f} {t['val_mean_auc'] - t1['val_mean_auc']:+20.4f}")
o, t = ours[-1], torch[-1]
print(f"\nper class after epoch {o['epoch']} (validation set):")
print(f"{'class':20s} {'cxr':>7s} {'PyTorch':>8s}")
for c, n in enumerate(names):
    a, b = o["val_auc"].get(n), t["val_auc"].get(str(c))
    print(f"{n:20s} {a if a is not None else float('nan'):7.4f} {b if b is not None else float('nan'):8.4f}")
PY
