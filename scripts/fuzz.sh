#!/usr/bin/env bash
# Fuzzes the spec parser and the control protocol with libFuzzer (clang).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET]   (default 60 seconds each; TARGET
# is spec_parser or control_protocol, default both)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
only="${2:-}"
# clang, and compiler-rt for libFuzzer and the sanitizers.
scripts/deps.sh clang libclang-rt-14-dev
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTANDEM_FUZZ=ON -DTANDEM_BUILD_TESTS=OFF -DTANDEM_SANITIZE=address,undefined >/dev/null

if [ -z "$only" ] || [ "$only" = spec_parser ]; then
  cmake --build build-fuzz -j"$(nproc)" --target spec_parser_fuzz
  corpus=$(mktemp -d)
  cp migrations/examples/*.yaml "$corpus/"
  for d in migrations/examples/*/; do cp "$d/spec.yaml" "$corpus/$(basename "$d").yaml"; done
  # Every operation with most of its keys, and inputs that once crashed it.
  cp tests/fuzz/seeds/*.yaml "$corpus/"
  # Deep nesting, flow and block, and a duplicate key.
  printf 'name: x\ndescription: %s%s\noperations: []\n' "$(printf '[%.0s' {1..40})" \
    "$(printf ']%.0s' {1..40})" >"$corpus/deep_flow.yaml"
  { printf 'name: x\nd:\n'; for i in $(seq 1 40); do printf '%*s- \n' $((2 * i)) ''; done; } \
    >"$corpus/deep_block.yaml"
  printf 'name: x\nname: y\noperations: []\n' >"$corpus/duplicate.yaml"
  build-fuzz/spec_parser_fuzz -max_total_time="$seconds" -max_len=4096 -timeout=5 "$corpus"
fi

if [ -z "$only" ] || [ "$only" = control_protocol ]; then
  cmake --build build-fuzz -j"$(nproc)" --target control_protocol_fuzz
  corpus=$(mktemp -d)
  # Seeds: one well-formed request of each command.
  i=0
  for req in '{"v":1,"cmd":"list"}' '{"v":1,"cmd":"status","name":"m","id":1}' \
      '{"v":1,"cmd":"submit","spec":"name: m\n","file":"m.yaml"}' \
      '{"v":1,"cmd":"approve","name":"m","phase":"cleanup"}' \
      '{"v":1,"cmd":"approve","name":"m","phase":"cutover","accept":["p"]}' \
      '{"v":1,"cmd":"events","name":"m","limit":5}' '{"v":1,"cmd":"pause","name":"m"}' \
      '{"v":1,"cmd":"slices","name":"m"}' \
      '{"v":1,"cmd":"slice","name":"m","slice":"eu","action":"promote"}' \
      "{\"v\":1,\"cmd\":\"list\",\"id\":$(printf '[%.0s' {1..40})$(printf ']%.0s' {1..40})}" \
      "{\"v\":1,\"cmd\":\"list\",\"id\":$(printf '[%.0s' {1..1000})$(printf ']%.0s' {1..1000})}"; do
    printf '%s' "$req" >"$corpus/seed$i"; i=$((i + 1))
  done
  build-fuzz/control_protocol_fuzz -max_total_time="$seconds" -max_len=2048 -timeout=5 "$corpus"
fi
