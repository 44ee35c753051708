#!/usr/bin/env bash
# Configures and builds tandem into ./build (or $TANDEM_BUILD_DIR).
# TANDEM_SANITIZE=address,undefined builds with sanitizers (default dir build-sanitize).
# Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
"$(pwd)/scripts/deps.sh"
if [ -n "${TANDEM_SANITIZE:-}" ]; then
  build="${TANDEM_BUILD_DIR:-build-sanitize}"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DTANDEM_SANITIZE="$TANDEM_SANITIZE" "$@" >/dev/null
else
  build="${TANDEM_BUILD_DIR:-build}"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_SANITIZE= "$@" >/dev/null
fi
cmake --build "$build" -j"$(nproc)"
