#!/usr/bin/env bash
# The benchmark: tandem against offline ALTER, one big UPDATE, a PL/pgSQL
# batch loop and pg_repack, each under the same pgbench load on an identical
# copy of the data. Results go to bench/results/ (Markdown, JSON, PNG).
# Usage: bench/run.sh [SCALE]   (default 50: five million accounts)
#        bench/run.sh 10 --methods none,loop,tandem   (a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-50}"
shift || true
scripts/deps.sh python3 gnuplot-nox postgresql-15-repack time
scripts/build.sh >/dev/null
exec python3 bench/bench.py --scale "$scale" "$@"
