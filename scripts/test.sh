#!/usr/bin/env bash
# Builds tandem and runs every test: unit, integration and end to end. The
# integration and e2e tests start their own throwaway PostgreSQL servers.
# Pass a ctest label to run a subset: scripts/test.sh unit
# TANDEM_SANITIZE=address,undefined runs the suite under ASan and UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/build.sh
if [ -n "${TANDEM_SANITIZE:-}" ]; then
  build="${TANDEM_BUILD_DIR:-build-sanitize}"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
  # The fault and crash sweeps try every ninth call under the sanitizers
  # (a different ninth each day; see below).
  export TANDEM_SWEEP_EVERY="${TANDEM_SWEEP_EVERY:-9}"
else
  build="${TANDEM_BUILD_DIR:-build}"
  # The fault and crash sweeps try every fourth call, from an offset that
  # changes daily (so four days' runs try every call) and is printed;
  # TANDEM_SWEEP_EVERY=1 tries every call (about 25 minutes more).
  export TANDEM_SWEEP_EVERY="${TANDEM_SWEEP_EVERY:-4}"
fi
label=()
[ $# -gt 0 ] && label=(-L "$1")
cd "$build"
ctest --output-on-failure -j"$(nproc)" "${label[@]}"
