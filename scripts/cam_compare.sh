#!/usr/bin/env bash
# Every class-activation method at every level side by side on one model and one set of images with
# boxes: runs `cxr gradcam --method M --layer L --boxes BOXES --faithfulness 10` for the 4 methods x 4
# levels into OUT/localisation/<method>_<layer>/ and prints one Markdown table (pointing game over all
# pairs and over true positives, energy-based pointing game, share of boxes found at IoBB >= 0.5,
# mean probability drop when the map's top 10% of pixels or as many random ones are blurred), best
# first by the true-positive pointing game. `cxr report` shows the runs in localisation/ side by side.
#
#   scripts/cam_compare.sh MODEL IMAGES_LIST BOXES OUT [DEVICE] [EXTRA gradcam FLAGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { sed -n 2,9p "$0" >&2; exit 2; }
model=$1 list=$2 boxes=$3 out=$4 device=${5:-auto}
shift $(($# < 5 ? $# : 5))
cxr=${CXR:-./build/tools/cxr}
mkdir -p "$out/localisation"
for method in gradcam gradcam++ hirescam layercam; do
  for layer in final block3 block2 fuse; do
    dir="$out/localisation/${method}_${layer}"
    start=$(date +%s.%N)
    "$cxr" gradcam --weights "$model" --out "$dir" --boxes "$boxes" --top-k 1 --device "$device" \
      --method "$method" --layer "$layer" --faithfulness 10 --quiet "$@" "$list" >/dev/null
    end=$(date +%s.%N)
    python3 - "$dir/gradcam.json" "$start" "$end" <<'EOF'
import json, sys
path, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
r = json.load(open(path))
r["seconds"] = end - start
json.dump(r, open(path, "w"), indent=2)
EOF
  done
done
python3 - "$out/localisation" <<'EOF'
import glob, json, os, sys
rows = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*", "gradcam.json"))):
    r = json.load(open(path))
    loc, f = r["localisation"], r.get("faithfulness", {})
    a, t = loc["overall"]["all"], loc["overall"]["true_positive"]
    rows.append((r["method"], r["layer"], "x".join(str(v) for v in r["levels"][-1]), a["pairs"], a["pointing_game"],
                 t["pairs"], t["pointing_game"], a["energy_pointing_game"], a["iobb_found"]["0.5"],
                 t["iobb_found"]["0.5"], f.get("mean_drop_map"), f.get("mean_drop_random"),
                 r["images"] / r["seconds"]))
fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
rows.sort(key=lambda x: (-(x[6] or 0), -(x[9] or 0)))
print("| method | layer | finest map | pairs | pointing game | TP pairs | TP pointing game | energy PG | "
      "IoBB>=0.5 found | TP IoBB>=0.5 found | p drop, map top 10% | p drop, random 10% | images/s (whole command) |")
print("|" + " --- |" * 13)
for row in rows:
    print("| " + " | ".join(fmt(v) for v in row[:12]) + f" | {row[12]:.2f} |")
EOF
