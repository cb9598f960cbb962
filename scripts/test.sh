#!/usr/bin/env bash
# Set up and build (scripts/setup.sh), then run the whole test suite. GPU tests skip with a message
# when no CUDA device is present; tests that read ../shared/data skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
cd build
ctest --output-on-failure -j"$(nproc)"
