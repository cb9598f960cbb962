#!/usr/bin/env bash
# Installs what cxr needs from Debian (with --tests, also what the test suite needs) (only the packages that are missing), then configures and builds
# it in Release under build/. The CUDA backend is built too when nvcc and cuDNN are present
# (/usr/local/cuda); pass -DCXR_CUDA=OFF in CXR_CMAKE_ARGS to skip it.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config libopenblas-openmp-dev libhdf5-dev libcli11-dev
          nlohmann-json3-dev libstb-dev libgtest-dev libbenchmark-dev libcairo2-dev libexpat1-dev
          libgdcm-dev libssl-dev libxxhash-dev libopenmpi-dev openmpi-bin)
# The test suite also opens the HTML report in a headless browser, writes full-size legacy Keras
# weight files with h5py (tests/fixtures/make_legacy_weight_fixtures.py full-size), and DICOM files
# with pydicom, DCMTK and GDCM's tools (tests/fixtures/make_dicom_fixtures.py).
# Files as pandas, pypng and PIL write them (tests/fixtures/make_writer_variants.py).
[ "${1:-}" = "--tests" ] && packages+=(chromium python3-h5py python3-numpy python3-pydicom python3-pil dcmtk
                                      libgdcm-tools python3-pandas python3-png)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# nvcc is not on PATH by default in /usr/local/cuda installs.
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${CXR_CMAKE_ARGS:-} >&2
cmake --build build -j"$(nproc)" >&2
