#!/usr/bin/env bash
# The demo: starts a throwaway PostgreSQL, loads pgbench data, keeps pgbench
# running, widens pgbench_accounts.abalance from integer to bigint with
# tandemd through cleanup, and reports what happened.
# Usage: scripts/demo.sh [SCALE]   (default 10: one million accounts)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scale="${1:-10}"
scripts/build.sh >/dev/null
tandemd="$root/${TANDEM_BUILD_DIR:-build}/tandemd"

. scripts/pg_env.sh tandem-demo
dir=$workdir
cleanup() {
  [ -n "${bench_pid:-}" ] && kill "$bench_pid" 2>/dev/null || true
  "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

echo "== starting a throwaway PostgreSQL in $dir"
"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-c listen_addresses='' -c unix_socket_directories='$dir' -p 5432" start >/dev/null
export PGHOST="$dir" PGPORT=5432 PGUSER=postgres PGDATABASE=postgres
export TANDEM_DSN="host=$dir port=5432 user=postgres dbname=postgres"

echo "== pgbench -i -s $scale ($((scale * 100000)) accounts)"
"$bin/pgbench" -i -q -s "$scale" >/dev/null 2>&1

echo "== pgbench load: 4 clients, running until the migration is done"
"$bin/pgbench" -n -c 4 -j 2 -T 100000 -P 5 >"$dir/pgbench.log" 2>&1 &
bench_pid=$!
sleep 2

spec="$root/migrations/examples/pgbench_abalance_bigint.yaml"
echo "== tandemd plan (abridged)"
"$tandemd" plan "$spec" | grep -E "^(phase|  step)"
echo "== tandemd run $spec --approve cleanup"
start=$(date +%s%N)
"$tandemd" run "$spec" --approve cleanup
end=$(date +%s%N)
sleep 2
kill -TERM "$bench_pid" 2>/dev/null || true
wait "$bench_pid" 2>/dev/null || true
bench_pid=""

echo "== what happened"
ms=$(( (end - start) / 1000000 ))
printf "migration wall time: %d.%03ds\n" $((ms / 1000)) $((ms % 1000))
aborted=$(grep -c "aborted" "$dir/pgbench.log" || true)
errors=$(grep -ciE "^(pgbench: )?error" "$dir/pgbench.log" || true)
txns=$(psql -XAtc "SELECT count(*) FROM pgbench_history")
echo "pgbench transactions committed during the demo: $txns"
echo "pgbench failed transactions (client errors or aborts): $((aborted + errors))"
psql -XAtc "SELECT 'abalance is now ' || format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'pgbench_accounts'::regclass AND attname = 'abalance'"
ok=$(psql -XAtc "SELECT (SELECT sum(abalance) FROM pgbench_accounts)
                      = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)")
left=$(psql -XAtc "SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%tandem%'")
if [ "$ok" = "t" ]; then
  echo "TPC-B invariant sum(abalance) = sum(history.delta): holds"
else
  echo "TPC-B invariant sum(abalance) = sum(history.delta): BROKEN"
fi
echo "tandem triggers left behind: $left"
[ "$ok" = "t" ] && [ "$((aborted + errors))" -eq 0 ] && [ "$left" -eq 0 ]
