#!/usr/bin/env bash
# Every GPU check and benchmark in one script, for a bare CUDA machine (nvcc and a driver, PyTorch's
# cuDNN/cuBLAS wheels, but no Debian packages and no network), most valuable first, within the
# device machines' limits (one command of at most 10 minutes, 15 minutes of device time in all):
#
#   scripts/gpu_check.sh pack          # here, on a build machine: build with CUDA against the cuDNN
#                                      # headers of PyTorch 2.11's wheel, bundle the binaries and the
#                                      # non-glibc, non-CUDA libraries they need into gpu-bundle/
#   scripts/gpu_check.sh run           # there, from the repository root with gpu-bundle/ beside it:
#                                      # at most 8 minutes (the stages below)
#   scripts/gpu_check.sh run --quick   # a second try: the GPU tests and one `cxr bench`, under 3 minutes
#
# Each stage prints one line as it finishes and appends it to $OUT/summary.txt; its logs and results
# go to $OUT/logs.tar.gz, rewritten after every stage, so a run cut short still returns what it
# measured (the device tool returns at most 8 files). $OUT defaults to ./gpu-out. A stage that
# fails, times out, is not reached in time, or GPU tests that skip or pass none, make the run fail:
# exit status 1.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_bundle.sh
bundle=gpu-bundle

# ---- budgets (seconds of wall time on an H100/H200; estimated, none measured yet) -------------------
# `run` stops starting stages that would end past LIMIT_RUN; each stage is killed at its budget.
LIMIT_RUN=480    # 8 minutes
LIMIT_QUICK=170  # --quick: under 3 minutes
declare -A BUDGET=(
  [unpack]=15             # xz -d of the bundle (~25 MB), nvidia-smi, cxr --version, ldd
  [gpu-tests]=75          # every CUDA op against the CPU oracle (cxr_tests, DenseNetGpu excluded)
  [network-test]=60       # DenseNetGpu.*: the whole DenseNet121 step on both backends
  [cxr-bench]=45          # cxr bench, batch 32, 320x320, 3 warm-up + 20 timed steps
  [profile]=30            # cxr profile, batch 32, 320x320, 2 warm-up + 3 steps, every op event-timed, trace
  [kernels]=40            # bench_kernels --benchmark_filter=cuda (each case validated, then timed)
  [train-step]=40         # bench_train_step --benchmark_filter=cuda (b8/128 and b32/320)
  [torch-amp-bf16-cl]=35  # PyTorch side by side, one process per mode, same batch and size
  [torch-compile]=90      # torch.compile: its warm-up (the compilation) is reported apart
  [torch-eager-tf32]=25
  [torch-eager-fp32]=25
)

# cuDNN of PyTorch 2.11.0's wheels: torch-2.11.0's METADATA requires nvidia-cudnn-cu13==9.19.0.56
# (`pip install --dry-run --no-deps --ignore-installed --report - torch==2.11.0`). pack compiles the
# bundle against that wheel's own headers, so the cuDNN the bundle meets there is the one it was
# built for (Note [cuDNN version policy] in engine/library_versions.h).
CUDNN_WHEEL_VERSION=${CXR_CUDNN_WHEEL_VERSION:-9.19.0.56}

# The wheel's include/ and its libcudnn.so.9 (the 130 KB front library, enough to link) under
# .cudnn/<version>/ (git-ignored), downloaded once; prints that folder.
cudnn_from_wheel() {
  local dir=.cudnn/$CUDNN_WHEEL_VERSION
  if [ ! -f "$dir/include/cudnn_version.h" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_27_x86_64 -d .cudnn/wheels "nvidia-cudnn-cu13==$CUDNN_WHEEL_VERSION" >&2 || return 1
    rm -rf "$dir" && mkdir -p "$dir"
    unzip -q -o .cudnn/wheels/nvidia_cudnn_cu13-"$CUDNN_WHEEL_VERSION"-*.whl 'nvidia/cudnn/include/*' \
      nvidia/cudnn/lib/libcudnn.so.9 -d "$dir/wheel" || return 1
    mv "$dir/wheel/nvidia/cudnn/include" "$dir/wheel/nvidia/cudnn/lib" "$dir/" && rm -rf "$dir/wheel"
  fi
  echo "$PWD/$dir"
}

pack() {
  set -e
  [ -n "${CUDACXX:-}" ] || ! [ -x /usr/local/cuda/bin/nvcc ] || export CUDACXX=/usr/local/cuda/bin/nvcc
  local cudnn
  cudnn=$(cudnn_from_wheel)
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CXR_GPU_ARCHS:-90}" \
    -DCUDNN_INCLUDE_DIR="$cudnn/include" -DCUDNN_LIBRARY="$cudnn/lib/libcudnn.so.9" >&2
  # cxr_cuda exists only when the CUDA backend is configured: fail here rather than bundle a CPU build.
  cmake --build build-gpu -j"$(nproc)" --target cxr_cuda cxr cxr_tests bench_train_step bench_kernels >&2
  bundle_binaries "$bundle.dir" build-gpu/tools/cxr build-gpu/tests/cxr_tests build-gpu/bench/bench_train_step \
    build-gpu/bench/bench_kernels
  check_bundle "$bundle.dir"
  rm -rf "$bundle" && mkdir "$bundle"
  archive_bundle "$bundle.dir" "$bundle/bundle.tar.xz" && rm -rf "$bundle.dir"
  du -sh "$bundle" >&2
  echo "packed $bundle (cuDNN headers $CUDNN_WHEEL_VERSION): carry it to the GPU machine and run: scripts/gpu_check.sh run" >&2
}

# ---- run ---------------------------------------------------------------------------------------------

record() {  # NAME TEXT: one line of the table, printed now and kept in the summary
  printf '%-20s %s\n' "$1" "$2" | tee -a "$summary"
}

save_logs() {  # all stage logs as one file under $out, replaced atomically
  tar -C "$logs_parent" -czf "$out/logs.tar.gz.part" gpu-check && mv "$out/logs.tar.gz.part" "$out/logs.tar.gz"
}

# stage NAME KIND RESULT STDOUT CMD...: runs CMD within BUDGET[NAME] (stdout to STDOUT, "-" for the
# log; stderr to the log), then records the summary of RESULT (gpu_check_summary.py KIND).
stage() {
  local name=$1 kind=$2 result=$3 stdout=$4 budget=${BUDGET[$1]}
  shift 4
  if ((SECONDS + budget > deadline)); then
    record "$name" "not run: its ${budget} s budget would pass the ${limit} s limit"
    failures=$((failures + 1))
    return
  fi
  local t0=$SECONDS status line
  [ "$stdout" = - ] && stdout="$logs/$name.log"
  timeout -k 5 "$budget" "$@" >"$stdout" 2>>"$logs/$name.log"
  status=$?
  line=$(python3 scripts/gpu_check_summary.py "$kind" "$result" "$status") || failures=$((failures + 1))
  record "$name" "$line [$((SECONDS - t0)) of ${budget} s]"
  save_logs
}

# Missing libraries of the bundle's binaries on this machine, with the bundle's library path.
missing_libraries() {
  for b in "$root"/bin/*; do env LD_LIBRARY_PATH="$libpath" ldd "$b"; done | awk '/not found/ {print $1}' | sort -u |
    tr '\n' ' '
}

run() {
  out="${OUT:-$PWD/gpu-out}" limit=$LIMIT_RUN
  [ "${1:-}" = --quick ] && limit=$LIMIT_QUICK
  [ -f "$bundle/bundle.tar.xz" ] || { echo "gpu_check: no $bundle/bundle.tar.xz (run 'scripts/gpu_check.sh pack' first)" >&2; exit 2; }
  mkdir -p "$out"
  logs_parent=$(mktemp -d) && logs="$logs_parent/gpu-check" && mkdir "$logs"
  summary="$out/summary.txt" && : >"$summary"
  deadline=$((SECONDS + limit)) failures=0
  root=$(mktemp -d)
  tar -C "$root" -xJf "$bundle/bundle.tar.xz"
  # The bundle's path only on our binaries: inside python3 (PyTorch, torch.compile's C++ builds)
  # Debian 12's libstdc++, libz, libssl, libffi or libgomp would shadow the GPU image's own.
  libpath=$(bundle_library_path "$root")
  local ours=(env LD_LIBRARY_PATH="$libpath" CXR_SOURCE_DIR="$PWD" CXR_BINARY="$root/bin/cxr" CXR_LOG_CUDNN=1)
  device=$(nvidia-smi -L 2>/dev/null | head -1)
  record device "${device:-no nvidia-smi}"
  local missing
  missing=$(missing_libraries)
  record libraries "$("${ours[@]}" "$root/bin/cxr" --version 2>&1 | tail -1); not found: ${missing:-none}"
  local bin=$root/bin
  stage gpu-tests gtest "$logs/gpu_tests.xml" - "${ours[@]}" "$bin/cxr_tests" \
    --gtest_filter='Cuda*:*CudaConv*:*Gpu*:-DenseNetGpu.*' --gtest_output=xml:"$logs/gpu_tests.xml"
  if [ "${1:-}" != --quick ]; then
    stage network-test gtest "$logs/network_test.xml" - "${ours[@]}" "$bin/cxr_tests" \
      --gtest_filter='DenseNetGpu.*' --gtest_output=xml:"$logs/network_test.xml"
  fi
  stage cxr-bench cxr-bench "$logs/cxr_bench.json" "$logs/cxr_bench.json" "${ours[@]}" "$bin/cxr" bench \
    --device cuda --batch 32 --size 320 --steps 20 --warmup 3 --json
  stage profile profile "$logs/profile.json" "$logs/profile.json" "${ours[@]}" "$bin/cxr" profile \
    --device cuda --batch 32 --size 320 --steps 3 --warmup 2 --json --trace "$logs/trace.json"
  if [ "${1:-}" != --quick ]; then
    stage kernels kernels "$logs/kernels.json" - "${ours[@]}" "$bin/bench_kernels" --benchmark_filter=cuda \
      --benchmark_out="$logs/kernels.json" --benchmark_out_format=json
    stage train-step train-step "$logs/train_step.json" - "${ours[@]}" "$bin/bench_train_step" \
      --benchmark_filter=cuda --benchmark_out="$logs/train_step.json" --benchmark_out_format=json
    torch_side_by_side
  fi
  echo
  echo "=== cxr GPU check ($((SECONDS)) s of ${limit} s): $failures stage(s) failed"
  cat "$summary"
  [ "${1:-}" = --quick ] || python3 scripts/gpu_check_summary.py side-by-side "$logs" "${device:-}" | tee -a "$summary"
  save_logs
  ((failures == 0))
}

# PyTorch's DenseNet121 with the same head, loss and Adam (bench/pytorch_train_step.py), without our
# library path; AMP and torch.compile first.
torch_side_by_side() {
  if ! python3 -c 'import torch, torchvision, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    record torch "PyTorch with CUDA not importable: no side by side"
    failures=$((failures + 1))
    return
  fi
  local mode steps
  for mode in amp-bf16-cl compile eager-tf32 eager-fp32; do
    steps=(--steps 20 --warmup 5)
    case $mode in compile) steps=(--steps 10 --warmup 3) ;; eager-*) steps=(--steps 10 --warmup 3) ;; esac
    stage "torch-$mode" torch "$logs/torch_$mode.json" "$logs/torch_$mode.json" env PYTHONUNBUFFERED=1 python3 \
      bench/pytorch_train_step.py --device cuda --mode "$mode" --batch 32 --size 320 "${steps[@]}" --json
  done
}

case "${1:-}" in
  pack) pack ;;
  run) run "${2:-}" ;;
  *) echo "usage: scripts/gpu_check.sh pack | run [--quick]" >&2; exit 2 ;;
esac
