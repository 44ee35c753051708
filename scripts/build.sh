#!/usr/bin/env bash
# Configures and builds tandem into ./build (or $TANDEM_BUILD_DIR).
# Extra arguments go to cmake, e.g. -DTANDEM_SANITIZE=address,undefined
set -euo pipefail
cd "$(dirname "$0")/.."
"$(pwd)/scripts/deps.sh"
build="${TANDEM_BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
