#!/usr/bin/env bash
# The soak: runs the example migrations one after another, each under its own
# pgbench workload, while faults are injected at random, for MINUTES minutes
# (default 10). Faults: kill -9 of tandemd, PostgreSQL restarted (fast and
# immediate), tandem's backends terminated, one of tandem's backends stopped
# (SIGSTOP) for a while, a session holding a lock on the migrated table, the
# whole server stopped for a while, and (in every third round, which runs a
# synchronous standby) a frozen primary with its standby promoted.
#
# Each round ends with the example's check.sql (pgbench: the TPC-B invariant),
# zero failed application transactions, the migration completed or rolled
# back, and nothing of tandem's left behind. Application sessions are paused
# around a restart, a stopped server or backend, or a failover, which would
# break them whatever tandem did; any other failed transaction counts. Prints what it did and the totals.
#
# Usage: scripts/soak.sh [MINUTES]
#   SOAK_SEED=N        random seed (default: the time)
#   SOAK_KEEP=1        keep the work directory (logs of every round)
#   TANDEM_BUILD_DIR   where tandemd is (default build); TANDEMD=PATH names the binary
# Exit status: 0 when every round held, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
minutes="${1:-10}"
seed="${SOAK_SEED:-$(date +%s)}"
RANDOM=$seed
tandemd="${TANDEMD:-$root/${TANDEM_BUILD_DIR:-build}/tandemd}"
[ -x "$tandemd" ] || { echo "no tandemd at $tandemd: run scripts/build.sh first" >&2; exit 2; }
. scripts/pg_env.sh tandem-soak
work=$workdir
port1=$((56000 + ($$ % 400) * 2))
port2=$((port1 + 1))

declare -A faults=() exits=()
rounds=0 rounds_bad=0 app_txns=0 app_failed=0 reruns=0
examples=(pgbench_abalance_bigint users_uuid_rekey users_full_name_to_pii balance_v1_to_v2)

log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$work/soak.log"; }
rnd() { echo $(($1 + RANDOM % ($2 - $1 + 1))); }

# --- servers ---------------------------------------------------------------
primary="" standby="" cur_data="" cur_port="" frozen_primary=0

pg_start() {  # DATA_DIR
  "${as_pg[@]}" "$bin/pg_ctl" -D "$1" -l "$1.log" -w -t 120 start >/dev/null
}
pg_stop_all() {
  for d in "$primary" "$standby"; do
    [ -n "$d" ] && [ -f "$d/postmaster.pid" ] || continue
    local pm
    pm=$(head -1 "$d/postmaster.pid")
    kill -CONT "$pm" $(pgrep -P "$pm") 2>/dev/null
    "${as_pg[@]}" "$bin/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 ||
      kill -9 "$pm" $(pgrep -P "$pm") 2>/dev/null
  done
  primary="" standby=""
}
q() {  # SQL on the current primary; prints the result
  "$bin/psql" -h 127.0.0.1 -p "$cur_port" -U postgres -d soak -XAtq -v ON_ERROR_STOP=1 -c "$1"
}
server_pids() {  # the current primary's postmaster and its children
  local pm
  pm=$(head -1 "$cur_data/postmaster.pid")
  echo "$pm" $(pgrep -P "$pm")
}

start_servers() {  # WITH_STANDBY(0|1)
  primary="$work/r$rounds/primary"
  "${as_pg[@]}" mkdir -p "$work/r$rounds"
  "${as_pg[@]}" "$bin/initdb" -D "$primary" -U postgres -A trust --no-sync >/dev/null
  cat >>"$primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port1
unix_socket_directories = '$work/r$rounds'
wal_level = replica
max_wal_senders = 4
max_connections = 100
shared_buffers = 128MB
EOF
  pg_start "$primary"
  cur_data=$primary cur_port=$port1 frozen_primary=0 standby=""
  "$bin/psql" -h 127.0.0.1 -p "$port1" -U postgres -XAtqc "CREATE DATABASE soak" >/dev/null
}

add_standby() {
  standby="$work/r$rounds/standby"
  "${as_pg[@]}" "$bin/pg_basebackup" -h 127.0.0.1 -p "$port1" -U postgres -D "$standby" -R -X stream -c fast
  cat >>"$standby/postgresql.conf" <<EOF
port = $port2
synchronous_standby_names = ''
EOF
  pg_start "$standby"
  # Synchronous: a commit the primary acknowledged is on the standby, so a
  # promotion loses nothing that anyone was told was committed.
  q "ALTER SYSTEM SET synchronous_standby_names = '*'" >/dev/null
  q "SELECT pg_reload_conf()" >/dev/null
}

# --- the application -------------------------------------------------------
wl="" wl_pid=""
app_env() {
  if [ -n "$standby" ]; then
    echo "PGHOST=127.0.0.1,127.0.0.1 PGPORT=$port1,$port2 PGTARGETSESSIONATTRS=read-write"
  else
    echo "PGHOST=127.0.0.1 PGPORT=$port1"
  fi
}
workload_start() {  # SCRIPT (empty: pgbench's TPC-B)
  wl="$work/r$rounds/wl"
  mkdir -p "$wl"
  : >"$wl/segments"
  local script=$1 envs
  envs=$(app_env)
  (
    while [ ! -e "$wl/stop" ]; do
      if [ -e "$wl/pause" ]; then
        touch "$wl/paused"
        sleep 0.1
        continue
      fi
      rm -f "$wl/paused"
      env $envs PGUSER=postgres PGDATABASE=soak PGCONNECT_TIMEOUT=3 \
        "$bin/pgbench" -n -c 4 -j 2 -T 5 ${script:+-f "$script"} >"$wl/seg.out" 2>&1
      rc=$?
      done_=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$wl/seg.out")
      failed=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$wl/seg.out")
      failed=${failed:-0}
      if [ "$rc" -ne 0 ] || grep -q aborted "$wl/seg.out"; then
        failed=$((failed + 1))
        cat "$wl/seg.out" >>"$wl/failed.out"
      fi
      echo "${done_:-0} $failed" >>"$wl/segments"
    done
  ) &
  wl_pid=$!
}
workload_pause() {
  [ -n "$wl_pid" ] || return 0
  rm -f "$wl/paused"
  touch "$wl/pause"
  for _ in $(seq 600); do [ -e "$wl/paused" ] && return 0; sleep 0.1; done
  log "  the workload did not pause within 60 s"
}
workload_resume() { [ -z "$wl" ] || rm -f "$wl/pause" "$wl/paused"; }
txns=0 failed=0
workload_stop() {  # sets txns and failed
  txns=0 failed=0
  [ -n "$wl_pid" ] || return
  # At least one whole segment, however quick the migration was.
  for _ in $(seq 300); do [ -s "$wl/segments" ] && break; sleep 0.1; done
  touch "$wl/stop"
  rm -f "$wl/pause"
  wait "$wl_pid" 2>/dev/null
  wl_pid=""
  read -r txns failed < <(awk '{t += $1; f += $2} END {print t + 0, f + 0}' "$wl/segments")
}

# --- faults ----------------------------------------------------------------
table=""
tandem_pid=""
inject() {
  local kinds=(kill9 kill9 kill9 terminate terminate terminate restart_fast restart_immediate
    freeze_session freeze_session blocker blocker freeze_server)
  [ -n "$standby" ] && [ "$frozen_primary" -eq 0 ] && kinds+=(failover failover)
  local f=${kinds[$((RANDOM % ${#kinds[@]}))]} pid secs
  case $f in
    kill9)
      kill -9 "$tandem_pid" 2>/dev/null || return ;;
    terminate)
      pid=$(q "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'tandemd %'
               ORDER BY random() LIMIT 1" 2>/dev/null)
      [ -n "$pid" ] || return
      q "SELECT pg_terminate_backend($pid)" >/dev/null 2>&1 ;;
    restart_fast | restart_immediate)
      workload_pause
      "${as_pg[@]}" "$bin/pg_ctl" -D "$cur_data" -l "$cur_data.log" -m "${f#restart_}" -w -t 120 \
        restart >/dev/null
      workload_resume ;;
    freeze_session)
      pid=$(q "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'tandemd %'
               ORDER BY random() LIMIT 1" 2>/dev/null)
      [ -n "$pid" ] || return
      secs=$(rnd 2 15)
      f="$f ${secs}s"
      # A stopped backend cannot end its own lock wait: an application
      # transaction that waits on a lock it holds, while holding one it waits
      # for, is chosen by PostgreSQL's deadlock check, whoever stopped it.
      workload_pause
      kill -STOP "$pid" && sleep "$secs"
      kill -CONT "$pid"
      workload_resume ;;
    blocker)
      secs=$(rnd 2 10)
      f="$f ${secs}s"
      q "BEGIN; LOCK TABLE $table IN ACCESS SHARE MODE; SELECT pg_sleep($secs); COMMIT" \
        >/dev/null 2>&1 & ;;
    freeze_server)
      secs=$(rnd 5 30)
      f="$f ${secs}s"
      workload_pause  # its new connections would time out: not tandem's doing
      pid=$(server_pids)
      kill -STOP $pid && sleep "$secs"
      kill -CONT $pid
      workload_resume ;;
    failover)
      workload_pause
      kill -STOP $(server_pids)
      "${as_pg[@]}" "$bin/pg_ctl" -D "$standby" -w -t 120 promote >/dev/null
      frozen_primary=1 cur_data=$standby cur_port=$port2
      workload_resume ;;
  esac
  faults[${f%% *}]=$((${faults[${f%% *}]:-0} + 1))
  log "  fault: $f"
}

# Runs tandemd with ARGS until it exits 0, injecting faults while it runs and
# running it again whenever it exits otherwise (as an operator would).
drive() {
  local dsn="host=127.0.0.1 port=$port1 user=postgres dbname=soak"
  [ -n "$standby" ] && dsn="host=127.0.0.1,127.0.0.1 port=$port1,$port2 user=postgres dbname=soak target_session_attrs=read-write"
  local attempt rc
  # Bash reports each kill -9 on stderr; the soak's own log says it instead.
  exec 3>&2 2>/dev/null
  for attempt in $(seq 40); do
    TANDEM_DSN="$dsn" "$tandemd" "$@" >>"$work/r$rounds/tandemd.log" 2>&1 &
    tandem_pid=$!
    local next=$(($(date +%s) + $(rnd 1 6)))
    while kill -0 "$tandem_pid" 2>/dev/null; do
      if [ "$(date +%s)" -ge "$next" ]; then
        inject
        next=$(($(date +%s) + $(rnd 2 8)))
      fi
      sleep 0.2
    done
    wait "$tandem_pid" 2>/dev/null
    rc=$?
    [ "$rc" -eq 0 ] && { exec 2>&3 3>&-; return 0; }
    exits[$rc]=$((${exits[$rc]:-0} + 1))
    reruns=$((reruns + 1))
    [ "$rc" -ne 137 ] && log "  tandemd $1 exited $rc: $(grep -v '^\s*$' "$work/r$rounds/tandemd.log" | tail -1 | cut -c1-200)"
    [ "$rc" -eq 7 ] && break  # a refused rollback will be refused again
    sleep 1
  done
  exec 2>&3 3>&-
  return 1
}

# --- one round -------------------------------------------------------------
round() {
  local ex=${examples[$((rounds % ${#examples[@]}))]} dir spec script check
  local with_standby=$((rounds % 3 == 2 ? 1 : 0)) path ok=1
  rounds=$((rounds + 1))
  start_servers
  if [ "$ex" = pgbench_abalance_bigint ]; then
    spec="$root/migrations/examples/$ex.yaml" script="" table=pgbench_accounts
    "$bin/pgbench" -h 127.0.0.1 -p "$port1" -U postgres -i -q -s 10 soak >/dev/null 2>&1
    check="SELECT (SELECT sum(abalance) FROM pgbench_accounts)
                = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"
  else
    dir="$root/migrations/examples/$ex"
    spec="$dir/spec.yaml" script="$dir/workload.sql" check=$(cat "$dir/check.sql")
    case $ex in
      users_uuid_rekey) table=orders ;;
      users_full_name_to_pii) table=users ;;
      balance_v1_to_v2) table=balances_v1 ;;
    esac
    q "$(cat "$dir/setup.sql")" >/dev/null
  fi
  [ "$with_standby" -eq 1 ] && add_standby
  path=$([ $((RANDOM % 4)) -eq 0 ] && echo rollback || echo complete)
  log "round $rounds: $ex, $path$([ "$with_standby" -eq 1 ] && echo ', with a synchronous standby')"
  workload_start "$script"
  drive run "$spec" --until cutover --approve cutover || ok=0
  if [ "$path" = rollback ]; then
    drive rollback "$spec" || ok=0
  elif [ -z "$script" ]; then
    drive run "$spec" --approve cleanup || ok=0  # pgbench's writers work in every state
  fi
  workload_stop
  # The application moves to the new shape before cleanup, which drops what
  # the old one wrote to.
  if [ "$path" = complete ] && [ -n "$script" ]; then drive run "$spec" --approve cleanup || ok=0; fi
  app_txns=$((app_txns + txns)) app_failed=$((app_failed + failed))
  local want state holds left
  want=$([ "$path" = rollback ] && echo rolled_back || echo completed)
  state=$(q "SELECT state FROM tandem.migrations" 2>&1)
  holds=$(q "$check" 2>&1 | tail -1)
  left=$(q "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'zz\\_tandem%')
            + (SELECT count(*) FROM pg_proc WHERE pronamespace = to_regnamespace('tandem')
                 AND prorettype = 'trigger'::regtype)
            + (SELECT count(*) FROM pg_attribute WHERE attname LIKE '\\_tandem%' AND attnum > 0
                 AND NOT attisdropped)
            + (SELECT count(*) FROM pg_constraint WHERE conname LIKE '\\_tandem%')
            + (SELECT count(*) FROM pg_index WHERE NOT indisvalid)" 2>&1)
  log "  $txns application transactions, $failed failed; state $state; check $holds; $left left behind"
  if [ "$ok" -ne 1 ] || [ "$failed" -ne 0 ] || [ "$state" != "$want" ] || [ "$holds" != t ] ||
    [ "$left" != 0 ]; then
    rounds_bad=$((rounds_bad + 1))
    log "  ROUND FAILED (logs: $work/r$rounds)"
    [ -f "$wl/failed.out" ] && head -20 "$wl/failed.out" | tee -a "$work/soak.log"
    SOAK_KEEP=1
  fi
  pg_stop_all
  [ "${SOAK_KEEP:-}" = 1 ] || rm -rf "$work/r$rounds"
}

cleanup() {
  [ -n "$wl_pid" ] && { touch "$wl/stop"; kill "$wl_pid" 2>/dev/null; }
  [ -n "$tandem_pid" ] && kill -9 "$tandem_pid" 2>/dev/null
  pg_stop_all
  [ "${SOAK_KEEP:-}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The whole file is read before anything runs, so that editing it does not
# change a soak that is running.
main() {
  log "soak: $minutes min, seed $seed, $("$tandemd" --version 2>/dev/null | head -1), work $work"
  start=$(date +%s)
  end=$((start + minutes * 60))
  while [ "$(date +%s)" -lt "$end" ]; do round; done

  elapsed=$((($(date +%s) - start) / 60))
  total=0
  for k in "${!faults[@]}"; do total=$((total + faults[$k])); done
  log "== totals after $elapsed min (seed $seed)"
  log "rounds: $rounds, failed: $rounds_bad"
  log "faults injected: $total ($(for k in "${!faults[@]}"; do printf '%s %s, ' "$k" "${faults[$k]}"; done | sed 's/, $//'))"
  log "tandemd runs that exited non-zero and were run again: $reruns ($(for k in "${!exits[@]}"; do printf 'exit %s: %s, ' "$k" "${exits[$k]}"; done | sed 's/, $//'))"
  log "application transactions: $app_txns, failed: $app_failed"
  [ "$rounds_bad" -eq 0 ] && [ "$rounds" -gt 0 ]
}
main "$@"; exit $?
