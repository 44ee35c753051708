#!/usr/bin/env bash
# Builds tandem and runs every test: unit, integration and end to end. The
# integration and e2e tests start their own throwaway PostgreSQL servers.
# Pass a ctest label to run a subset: scripts/test.sh unit
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
build="${TANDEM_BUILD_DIR:-build}"
label=()
[ $# -gt 0 ] && label=(-L "$1")
cd "$build"
ctest --output-on-failure -j"$(nproc)" "${label[@]}"
