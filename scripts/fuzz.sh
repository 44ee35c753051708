#!/usr/bin/env bash
# Fuzzes the spec parser with libFuzzer (clang), seeded from the example specs
# and the unit tests' malformed specs. Usage: scripts/fuzz.sh [SECONDS]  (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v clang++ >/dev/null || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo;
  $sudo apt-get install -y -qq clang >/dev/null; }
scripts/deps.sh
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTANDEM_FUZZ=ON -DTANDEM_BUILD_TESTS=OFF -DTANDEM_SANITIZE=address,undefined >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target spec_parser_fuzz
corpus=$(mktemp -d)
cp migrations/examples/*.yaml "$corpus/"
for d in migrations/examples/*/; do cp "$d/spec.yaml" "$corpus/$(basename "$d").yaml"; done
build-fuzz/spec_parser_fuzz -max_total_time="$seconds" -max_len=4096 -timeout=5 "$corpus"
