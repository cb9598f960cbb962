#!/usr/bin/env bash
# The main job on a built-in default: set up and build, then show the model and time a few training
# steps of DenseNet121 on random data on the best device present (a GPU at batch 32 / 320x320, else
# the CPU at batch 8 / 128x128).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
./build/tools/cxr model-info | tail -6
if ./build/tools/cxr bench --device cuda --steps 1 --warmup 0 --batch 1 --size 64 >/dev/null 2>&1; then
  ./build/tools/cxr bench --device cuda --batch 32 --size 320 --steps 10 --warmup 2
else
  ./build/tools/cxr bench --device cpu --batch 8 --size 128 --steps 3 --warmup 1
fi
