#!/usr/bin/env bash
# Localisation on real data: trains DenseNet121 from scratch on the 1,091 NIH images with official
# boxes in ../shared/data/nih-320 (patient-wise 70/10/20 split, resized to SIZE), then runs every
# class-activation method at every level on the test images (scripts/cam_compare.sh: pointing game,
# energy pointing game, IoBB, faithfulness, side by side) and the per-class table of the best one.
# From scratch on so few images the scores are modest; they are recorded as measured in VALIDATION.md.
#
#   scripts/pointing_nih320.sh [OUT_DIR] [EPOCHS] [SIZE] [DEVICE]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-pointing-nih320}"
epochs="${2:-5}"
size="${3:-128}"
device="${4:-auto}"
src=../shared/data/nih-320
[ -d "$src/images" ] || { echo "pointing_nih320: $src not found (the real NIH images with boxes)" >&2; exit 2; }
cxr=./build/tools/cxr
rm -rf "$out" && mkdir -p "$out"
"$cxr" prepare --csv "$src/Data_Entry_2017_v2020.csv" --images "$src/images" --out "$out/data.h5" \
  --size "$size" --split 0.7,0.1,0.2 --seed 1 --quiet >/dev/null
"$cxr" train --data "$out/data.h5" --out "$out/run" --device "$device" --epochs "$epochs" --batch 16 \
  --lr 1e-3 --bn-momentum 0.9 --monitor auc --plateau-patience 2 --seed 1 --quiet
"$cxr" split-check --data "$out/data.h5" --list test | sed "s|^|$src/images/|" >"$out/test_images.txt"
CXR="$cxr" scripts/cam_compare.sh "$out/run/best.h5" "$out/test_images.txt" "$src/BBox_List_2017.csv" "$out" "$device" \
  | tee "$out/cam_compare.md"
best=$(sed -n 3p "$out/cam_compare.md" | awk -F' [|] ' '{print $1" "$2}' | tr -d '|' | xargs)
read -r method layer <<<"$best"
"$cxr" gradcam --weights "$out/run/best.h5" --out "$out/gradcam" --boxes "$src/BBox_List_2017.csv" \
  --top-k 1 --device "$device" --method "$method" --layer "$layer" --quiet "$out/test_images.txt" | tail -20
