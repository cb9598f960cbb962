#!/usr/bin/env bash
# Every GPU check and benchmark in one script, for a bare CUDA machine (nvcc and a driver, PyTorch's
# cuDNN/cuBLAS wheels, but no Debian packages and no network): the GPU tests, the whole suite, the
# training-step and kernel benchmarks, `cxr bench` at batch 32 / 320x320 and PyTorch's training step
# beside it (eager FP32, eager TF32, AMP BF16 channels-last, torch.compile), then a short table.
#
#   scripts/gpu_check.sh pack   # here, on a build machine: build with CUDA, bundle binaries + the
#                               # non-CUDA shared libraries they need into gpu-bundle/
#   scripts/gpu_check.sh run    # there, from the repository root with gpu-bundle/ beside it: run the
#                               # GPU tests, the whole suite, and the training-step benchmarks, then
#                               # print a short table last. Full logs go to $OUT (or ./gpu-out).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=gpu-bundle

pack() {
  [ -n "${CUDACXX:-}" ] || ! [ -x /usr/local/cuda/bin/nvcc ] || export CUDACXX=/usr/local/cuda/bin/nvcc
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CXR_GPU_ARCHS:-90}" >&2
  # cxr_cuda exists only when the CUDA backend is configured: fail here rather than bundle a CPU build.
  cmake --build build-gpu -j"$(nproc)" --target cxr_cuda cxr cxr_tests bench_train_step bench_kernels >&2
  rm -rf "$bundle" && mkdir -p "$bundle/bin" "$bundle/lib"
  cp build-gpu/tools/cxr build-gpu/tests/cxr_tests build-gpu/bench/bench_train_step build-gpu/bench/bench_kernels "$bundle/bin/"
  # Shared libraries other than glibc's and CUDA's own (the GPU machine has those).
  for b in "$bundle"/bin/*; do
    ldd "$b" | awk '/=> \// {print $3}'
  done | sort -u | grep -v -E '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so|libcuda|libcudart|libcudnn|libcublas|libnvrtc' |
    while read -r lib; do cp -L "$lib" "$bundle/lib/"; done
  # The device tool carries at most 64 MiB with the tree; OpenBLAS alone is 35 MB: ship one archive.
  tar -C "$bundle" -cJf bundle.tar.xz bin lib && rm -rf "$bundle" && mkdir "$bundle" && mv bundle.tar.xz "$bundle/"
  du -sh "$bundle" >&2
  echo "packed $bundle: carry it to the GPU machine and run: scripts/gpu_check.sh run" >&2
}

run() {
  local out="${OUT:-$PWD/gpu-out}"
  mkdir -p "$out"
  [ -f "$bundle/bundle.tar.xz" ] || { echo "gpu_check: no $bundle/bundle.tar.xz (run 'scripts/gpu_check.sh pack' first)" >&2; exit 2; }
  local root
  root=$(mktemp -d)
  tar -C "$root" -xJf "$bundle/bundle.tar.xz"
  # cuDNN and cuBLAS from PyTorch's wheels, CUDA's runtime from the toolkit.
  local extra
  extra=$(python3 - <<'PY' 2>/dev/null || true
import importlib, os
paths = []
for m in ("nvidia.cudnn", "nvidia.cublas", "nvidia.cuda_runtime", "nvidia.cu13", "nvidia.cuda_nvrtc"):
    try:
        mod = importlib.import_module(m)
        for p in getattr(mod, "__path__", []):
            for sub in ("lib", "lib64"):
                if os.path.isdir(os.path.join(p, sub)):
                    paths.append(os.path.join(p, sub))
    except Exception:
        pass
print(":".join(paths))
PY
)
  export LD_LIBRARY_PATH="$root/lib:${extra}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  export CXR_SOURCE_DIR="$PWD" CXR_BINARY="$root/bin/cxr"
  { nvidia-smi -L || true; } | tee "$out/device.txt"
  local rc=0
  "$root/bin/cxr_tests" --gtest_filter='Cuda*:*CudaConv*:*Gpu*' --gtest_output=xml:"$out/gpu_tests.xml" \
    2>&1 | tee "$out/gpu_tests.log" || rc=1
  "$root/bin/cxr_tests" --gtest_output=xml:"$out/all_tests.xml" >"$out/all_tests.log" 2>&1 || rc=1
  "$root/bin/bench_train_step" --benchmark_filter=cuda --benchmark_out="$out/bench.json" \
    --benchmark_out_format=json 2>&1 | tee "$out/bench.log" || rc=1
  "$root/bin/bench_kernels" --benchmark_filter=cuda --benchmark_out="$out/kernels.json" \
    --benchmark_out_format=json >"$out/kernels.log" 2>&1 || rc=1
  "$root/bin/cxr" bench --device cuda --batch 32 --size 320 --steps 20 --warmup 3 --json \
    >"$out/cxr_bench.json" 2>"$out/cxr_bench.log" || rc=1
  # Side by side on the same GPU in the same run: PyTorch's densenet121 with the same head, loss and
  # Adam (bench/pytorch_train_step.py), in each of its fast modes. A mode that fails is reported as such.
  if python3 -c 'import torch, torchvision, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    for mode in eager-fp32 eager-tf32 amp-bf16-cl compile; do
      timeout 300 python3 bench/pytorch_train_step.py --device cuda --mode "$mode" --batch 32 --size 320 \
        --steps 20 --warmup 5 --json >"$out/torch_$mode.json" 2>"$out/torch_$mode.log" || rc=1
    done
  else
    echo "gpu_check: PyTorch with CUDA not importable: no side-by-side" | tee "$out/torch_missing.txt"
  fi
  summary "$out"
  return $rc
}

summary() {
  python3 - "$1" <<'PY'
import json, os, re, sys
out = sys.argv[1]
def counts(xml):
    try:
        t = open(os.path.join(out, xml)).read()
    except OSError:
        return "not run"
    m = re.search(r'<testsuites tests="(\d+)" failures="(\d+)" disabled="\d+" errors="(\d+)"', t)
    skipped = len(re.findall(r'<skipped', t))
    return f"{int(m[1]) - int(m[2]) - int(m[3]) - skipped} passed, {int(m[2]) + int(m[3])} failed, {skipped} skipped" if m else "no result"
rows = [("GPU tests", counts("gpu_tests.xml")), ("all tests", counts("all_tests.xml"))]
try:
    for b in json.load(open(os.path.join(out, "bench.json")))["benchmarks"]:
        if "error_message" in b:
            rows.append((b["name"], b["error_message"]))
        else:
            rows.append((b["name"], f'{b["images_per_second"]:.1f} img/s, peak {b["peak_bytes"] / 2**30:.2f} GiB, '
                                    f'plan {b["arena_bytes"] / 2**30:.2f} GiB'))
except Exception as e:
    rows.append(("bench_train_step", f"no result ({e})"))
try:
    for b in json.load(open(os.path.join(out, "kernels.json")))["benchmarks"]:
        rate = {k: v for k, v in b.items() if k in ("GFLOP/s", "GB/s")}
        rows.append((b["name"].replace("/real_time", ""), b.get("error_message") or
                     f'{b["real_time"] / 1e3:.1f} us, ' + ", ".join(f"{v:.1f} {k}" for k, v in rate.items())))
except Exception as e:
    rows.append(("bench_kernels", f"no result ({e})"))
try:
    j = json.load(open(os.path.join(out, "cxr_bench.json")))
    rows.append(("cxr bench b32 s320", f'{j["images_per_second"]:.1f} img/s, peak {j["peak_bytes"] / 2**30:.2f} GiB'))
except Exception:
    rows.append(("cxr bench b32 s320", "failed: see cxr_bench.log"))
dev = open(os.path.join(out, "device.txt")).read().strip() or "no nvidia-smi"
print("\n=== cxr GPU check:", dev.splitlines()[0] if dev else "")
for k, v in rows:
    print(f"{k:36s} {v}")
# Side by side at batch 32, 320x320 (34.7 GFLOP per image per training step, ../shared/guide/FACTS.md).
limits = {"H200": (67, 495, 989, 4.8), "H100": (67, 495, 989, 3.35)}  # FP32, TF32, BF16 dense TFLOP/s; TB/s
lim = next((v for k, v in limits.items() if k in dev), None)
side = []
try:
    j = json.load(open(os.path.join(out, "cxr_bench.json")))
    side.append(("cxr fp32", j["images_per_second"], j["peak_bytes"]))
except Exception:
    pass
for mode in ("eager-fp32", "eager-tf32", "amp-bf16-cl", "compile"):
    try:
        t = json.load(open(os.path.join(out, f"torch_{mode}.json")))
        side.append((f"torch {mode}", t["images_per_second"], t["peak_device_bytes"]))
    except Exception:
        side.append((f"torch {mode}", None, None))
if side and side[0][0] == "cxr fp32":
    ci, cp = side[0][1], side[0][2]
    print(f"\n{'b32 / 320x320':18s} {'img/s':>8s} {'peak GiB':>9s} {'cxr/this img/s':>15s} {'cxr/this peak':>14s}")
    for name, ips, peak in side:
        if ips is None:
            print(f"{name:18s} {'failed (see its log)':>8s}")
            continue
        print(f"{name:18s} {ips:8.1f} {peak / 2**30:9.2f} {ci / ips:15.2f} {cp / peak:14.2f}")
    tflops = ci * 34.7e9 / 1e12
    if lim:
        print(f"cxr: {tflops:.1f} TFLOP/s = {100 * tflops / lim[0]:.0f}% of FP32 peak, {100 * tflops / lim[1]:.0f}% of TF32 peak")
    else:
        print(f"cxr: {tflops:.1f} TFLOP/s (no peak figures for this GPU)")
PY
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  *) echo "usage: scripts/gpu_check.sh pack|run" >&2; exit 2 ;;
esac
