#!/usr/bin/env python3
"""Side-by-side benchmark of ways to change pgbench_accounts.abalance.

Starts a throwaway PostgreSQL, builds one pgbench dataset as a template, and
for each method clones it (CREATE DATABASE ... TEMPLATE), runs the same
pgbench load against the clone, and runs the method under that load:

  none      no migration: the baseline the others are compared with
  alter     offline ALTER TABLE ... ALTER COLUMN abalance TYPE bigint
  update    ADD COLUMN, then one UPDATE of every row
  loop      ADD COLUMN, then a PL/pgSQL keyset loop committing every 1000 rows
  repack    pg_repack of the table (a rewrite, not a type change: the online
            rewrite tool people reach for)
  tandem    tandemd run with the spec's default settings
  tandem_fast  tandemd run with its fastest settings (see FAST_SETTINGS)

The key case (not in the default list): the primary key pgbench_accounts.aid
from integer to bigint, its index built again on the new column.

  alter_key   offline ALTER TABLE ... ALTER COLUMN aid TYPE bigint
  tandem_key  tandemd run of alter_column_type on aid, default settings

The key case with a foreign key referencing it (the orders_id_to_bigint
example's shape), on a copy made with pgbench --foreign-keys, whose
pgbench_history gains a bigserial primary key (tandem walks a table by its
key) and references pgbench_accounts (aid):

  alter_keys   offline ALTER of pgbench_accounts.aid and pgbench_history.aid
               to bigint, in one transaction
  tandem_keys  tandemd run of alter_column_type on both, default settings

Then: pgbench TPS and a bulk insert with tandem's dual-write trigger
installed versus not, and tandemd's peak memory.

Per method: rows/s, ratio to `loop`, client TPS relative to the `none` runs
nearest before and after it, client latency p50/p99/max while the method
ran, and the longest time any client was seen waiting on a lock
(pg_stat_activity sampled every 50 ms). With --repeat N the method list runs
N times over and the report adds each method's median and range.

The load runs as fast as its clients go (the server's CPU all taken), or,
with --rate N, is offered at N transactions per second in all: an
application that leaves the server room, whose latencies count from each
transaction's scheduled start.

Writes bench/results/<stamp>.json and .md, latest.json/latest.md (for a
--rate run: <stamp>-r<N>.* and latest-paced.*), and PNG plots when gnuplot
is installed. Usage: bench/run.sh [SCALE] (default 50).
"""

import argparse
import hashlib
import datetime
import glob
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS = 4
WARMUP = 5.0  # seconds of load before the method starts
TAIL = 3.0  # seconds of load after it ends
KERNEL_BURST_MB = 64  # a second in which the kernel wrote back this much is named
BASELINE_SECONDS = 20.0
# Two workers of 50,000-row batches: 1.4x one worker's rate on this 2-core
# machine (scale 10), at a heavy cost to the clients; see docs/performance.md.
FAST_SETTINGS = {"batch_size": 50000, "batch_rest_percent": 0, "backfill_workers": 2,
                 "lock_timeout": "500ms"}


def pg_bin():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not dirs:
        sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
    return dirs[-1]


class Server:
    """A throwaway PostgreSQL on a unix socket in a temporary directory."""

    def __init__(self, settings=()):
        self.bin = pg_bin()
        self.dir = tempfile.mkdtemp(prefix="tandem-bench-")
        self.as_pg = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_pg = ["runuser", "-u", "postgres", "--"]
        data = os.path.join(self.dir, "data")
        subprocess.run(self.as_pg + [f"{self.bin}/initdb", "-D", data, "-U", "postgres", "-A",
                                     "trust", "--no-sync"], check=True, stdout=subprocess.DEVNULL)
        opts = (f"-c listen_addresses='' -c unix_socket_directories='{self.dir}' -p 5432"
                " -c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min"
                " -c shared_preload_libraries=''"
                # What the server did on its own (checkpoints, autovacuum), in
                # its log with UTC times: the report puts it next to the slow
                # seconds (server_events).
                " -c log_checkpoints=on -c log_autovacuum_min_duration=0"
                " -c log_timezone=UTC -c log_line_prefix='%m '")
        opts += "".join(f" -c {kv}" for kv in settings)
        log = self.log = os.path.join(self.dir, "server.log")
        started = subprocess.run(self.as_pg + [f"{self.bin}/pg_ctl", "-D", data, "-l", log, "-w",
                                               "-o", opts, "start"], stdout=subprocess.DEVNULL)
        if started.returncode != 0:
            with open(log) as f:
                raise SystemExit(f"the bench's PostgreSQL did not start:\n{f.read()[-2000:]}")
        self.env = dict(os.environ, PGHOST=self.dir, PGPORT="5432", PGUSER="postgres")

    def dsn(self, db):
        return f"host={self.dir} port=5432 user=postgres dbname={db}"

    def psql(self, db, sql):
        r = subprocess.run([f"{self.bin}/psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, "-c",
                            sql], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {sql[:200]}\n{r.stderr}")
        return r.stdout.strip()

    def stop(self):
        subprocess.run(self.as_pg + [f"{self.bin}/pg_ctl", "-D", os.path.join(self.dir, "data"),
                                     "-m", "immediate", "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def pgbench_template(server, scale, name="bench_template"):
    """pgbench -i at `scale` into a new database `name`, vacuumed and analysed:
    the template every measurement clones."""
    print(f"== pgbench -i -s {scale}", flush=True)
    server.psql("postgres", f"CREATE DATABASE {name}")
    subprocess.run([f"{server.bin}/pgbench", "-i", "-q", "-s", str(scale), name], env=server.env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server.psql(name, "VACUUM ANALYZE")


class Load:
    """pgbench's TPC-B script with per-transaction logs, until stopped."""

    def __init__(self, server, db, workdir, rate=None):
        """rate: transactions per second offered (pgbench --rate, an open loop
        whose latencies count from each transaction's scheduled start); as
        fast as the clients go when None."""
        self.server, self.db = server, db
        self.logdir = tempfile.mkdtemp(prefix="pgbench-", dir=workdir)
        prefix = os.path.join(self.logdir, "tx")
        paced = ["--rate", str(rate)] if rate else []
        self.proc = subprocess.Popen(
            [f"{server.bin}/pgbench", "-n", "-c", str(CLIENTS), "-j", "2", "-T", "100000", "-l",
             f"--log-prefix={prefix}"] + paced + [db],
            env=server.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self):
        # SIGTERM, not SIGINT: a shell that starts the bench in the
        # background without job control makes it ignore SIGINT, and so
        # pgbench, which went on for the 30 s below after every method.
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def transactions(self):
        """(finish time in epoch seconds, latency in ms) of every logged transaction."""
        out = []
        for path in glob.glob(os.path.join(self.logdir, "tx*")):
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) < 6 or not parts[2].isdigit():
                        continue  # a failed transaction, or a line cut short by the stop
                    out.append((int(parts[4]) + int(parts[5]) / 1e6, int(parts[2]) / 1000.0))
        return out


class LockWatch:
    """What the server's sessions are doing, sampled every 50 ms by one psql
    session (\\watch): a new session per sample would cost the machine a
    connection and a backend twenty times a second. Keeps the longest a
    pgbench client was seen waiting on a lock, and per sample what every
    active session waited on ("CPU" when on none): the pgbench clients as
    `client`, the others by program (`tandemd`, `psql`, `pg_repack`) or
    background process (`autovacuum worker`, `checkpointer`, ...), so the
    slow seconds of a run can be told apart."""

    SQL = ("SELECT extract(epoch FROM clock_timestamp()),"
           " coalesce(max(extract(epoch FROM clock_timestamp() - query_start))"
           "   FILTER (WHERE application_name = 'pgbench' AND wait_event_type = 'Lock'), 0),"
           " coalesce(string_agg(CASE WHEN application_name = 'pgbench' THEN 'client'"
           "   WHEN application_name <> '' THEN split_part(application_name, ' ', 1)"
           "   ELSE backend_type END || '=' || coalesce(wait_event_type || ':' || wait_event,"
           "   'CPU'), ','), '')"
           " FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
           " AND (state = 'active' OR (backend_type <> 'client backend'"
           "      AND coalesce(wait_event_type, '') <> 'Activity')) \\watch 0.05\n")

    def __init__(self, server, db):
        self.longest = 0.0
        self.samples = []  # (epoch seconds, {"client=CPU": count, ...})
        self.proc = subprocess.Popen([f"{server.bin}/psql", "-XAtq", "-d", db], env=server.env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.proc.stdin.write(self.SQL)
        self.proc.stdin.flush()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        for line in self.proc.stdout:
            fields = line.rstrip("\n").split("|")
            if len(fields) != 3:
                continue  # the blank line after each result
            try:
                at, lock = float(fields[0]), float(fields[1])
            except ValueError:
                continue
            self.longest = max(self.longest, lock)
            counts = {}
            for w in filter(None, fields[2].split(",")):
                counts[w] = counts.get(w, 0) + 1
            self.samples.append((at, counts))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.thread.join()
        return self.longest



class KernelDirty:
    """The kernel's dirty page cache, sampled every 100 ms from /proc/meminfo
    (the bench's server is local): data files the server wrote that are not
    on disk yet. When the kernel writes a burst of them back (30 s after they
    were first dirtied, by default), the clients' WAL flushes wait behind it."""

    def __init__(self):
        self.samples = []  # (epoch seconds, Dirty in KiB)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            try:
                with open("/proc/meminfo") as f:
                    dirty = next(int(line.split()[1]) for line in f if line.startswith("Dirty:"))
            except (OSError, StopIteration, ValueError):
                return
            self.samples.append((time.time(), dirty))
            self.done.wait(0.1)

    def stop(self):
        self.done.set()
        self.thread.join()

    def written_back_mb(self, lo, hi):
        """MB the dirty page cache shrank by between lo and hi (epoch seconds):
        what the kernel wrote back then, less what was dirtied meanwhile."""
        s = [d for (t, d) in self.samples if lo <= t < hi]
        return round(sum(max(0, a - b) for a, b in zip(s, s[1:])) / 1024.0)

    def peak_mb(self, lo, hi):
        return round(max((d for (t, d) in self.samples if lo <= t < hi), default=0) / 1024.0)

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC (?:LOG|WARNING):  (.*)")


def server_events(log):
    """What the server did on its own, from its log: checkpoints (from
    "starting" to "complete") and autovacuum or autoanalyze runs (logged when
    they end, with their elapsed time). (start, end, text) in epoch seconds."""
    events, starting, last = [], None, None
    try:
        with open(log) as f:
            lines = f.read().splitlines()
    except OSError:
        return events
    for line in lines:
        m = LOG_LINE.match(line)
        if not m:
            # A continuation line: autovacuum's "system usage: ... elapsed: X s".
            e = re.search(r"elapsed: ([\d.]+) s", line)
            if e and last is not None:
                end, text = last
                events.append((end - float(e.group(1)), end, text))
                last = None
            continue
        at = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        msg = m.group(2)
        if msg.startswith("checkpoint starting"):
            starting = at
        elif msg.startswith("checkpoint complete") and starting is not None:
            parts = msg[len("checkpoint complete: "):].split(";")
            events.append((starting, at, "checkpoint " + ";".join(parts[:1] + parts[2:3])))
            starting = None
        elif msg.startswith("automatic vacuum of table") or msg.startswith("automatic analyze of table"):
            last = (at, msg.split(":")[0].replace("automatic ", "auto"))
    return events


def waits_in(samples, t0, lo, hi):
    """Session-samples per "who=wait" over samples from t0+lo to t0+hi s."""
    total = {}
    for (at, counts) in samples:
        if lo <= at - t0 < hi:
            for k, n in counts.items():
                total[k] = total.get(k, 0) + n
    return total


def clients_between(txs, t0, t1):
    """The clients' TPS between t0 and t1 (epoch seconds), and the latencies
    of every transaction in flight at some point between them: one blocked
    by a method finishes after it, with the whole wait in its latency."""
    inside = [lat for (t, lat) in txs if t >= t0 and t - lat / 1000.0 <= t1]
    return {
        "seconds": round(t1 - t0, 3),
        "client_tps": round(sum(1 for (t, _) in txs if t0 <= t <= t1) / (t1 - t0), 1),
        "latency_ms": {
            "p50": percentile(inside, 50),
            "p99": percentile(inside, 99),
            "max": max(inside) if inside else None,
        },
    }


def wal_counters(server, db):
    """The server's WAL position, full-page images, times a backend found
    the WAL buffers full, and WAL segment files in pg_wal (a new file is
    written through once, zeros, before it is used)."""
    row = server.psql(db, "SELECT pg_current_wal_lsn() - '0/0', wal_fpi, wal_buffers_full,"
                          " (SELECT count(*) FROM pg_ls_waldir()) FROM pg_stat_wal")
    return [int(float(v)) for v in row.split("|")]


def wal_between(before, after):
    return {"mb": round((after[0] - before[0]) / 1e6), "full_page_images": after[1] - before[1],
            "buffers_full": after[2] - before[2], "new_segment_files": after[3] - before[3]}

def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


def tandem_spec(name, settings, columns=(("pgbench_accounts", "abalance"),)):
    lines = [f"name: {name}"]
    if settings:
        lines.append("settings:")
        lines += [f"  {k}: {v}" for k, v in settings.items()]
    lines.append("operations:")
    for table, column in columns:
        lines += ["  - alter_column_type:", f"      table: {table}", f"      column: {column}",
                  "      type: bigint", f"      up: {column}::bigint",
                  f"      down: {column}::integer"]
    return "\n".join(lines) + "\n"


def run_tandem(server, db, tandemd, workdir, settings, rows=None, until=None,
               columns=(("pgbench_accounts", "abalance"),)):
    """Runs tandemd; returns (seconds, peak RSS in KiB, backfill rows/s for
    `rows` rows, and (step, start, end) in epoch seconds for each step)."""
    spec = os.path.join(workdir, f"{db}.yaml")
    with open(spec, "w") as f:
        f.write(tandem_spec("bench_" + db, settings, columns))
    args = [tandemd, "run", spec, "--dsn", server.dsn(db)]
    args += ["--until", until] if until else ["--approve", "all"]
    t0 = time.time()
    # GNU time reports tandemd's own peak RSS. (The rusage of a child that
    # Python forks counts Python's pages from before the exec.)
    rss_file = os.path.join(workdir, f"{db}.rss")
    args = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + args
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, _ = os.wait4(p.pid, 0)
    seconds = time.time() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"tandemd failed ({p.returncode}): {p.stderr.read()}")
    # Not count(*) here: the method's window is still open, and the first
    # scan of a table whose every row was just rewritten prunes every page,
    # a burst of WAL that stalled the clients' commits for up to 400 ms and
    # was counted as tandem's (2026-12-02).
    steps = []
    for line in server.psql(db, "SELECT step_id || ' ' || extract(epoch FROM started_at) || ' ' ||"
                                " extract(epoch FROM finished_at) FROM tandem.steps"
                                " WHERE started_at IS NOT NULL AND finished_at IS NOT NULL"
                                " ORDER BY started_at").splitlines():
        step, start, end = line.split()
        steps.append((step, float(start), float(end)))
    backfill = next(((s, e) for (i, s, e) in steps if i == "1.backfill"), None)
    rate = None
    if rows and backfill and backfill[1] > backfill[0]:
        rate = rows / (backfill[1] - backfill[0])
    with open(rss_file) as f:
        peak_kib = int(f.read().split()[-1])
    return seconds, peak_kib, rate, steps


METHODS = {
    "alter": "ALTER TABLE pgbench_accounts ALTER COLUMN abalance TYPE bigint",
    "alter_key": "ALTER TABLE pgbench_accounts ALTER COLUMN aid TYPE bigint",
    "alter_keys": ("ALTER TABLE pgbench_accounts ALTER COLUMN aid TYPE bigint;"
                   " ALTER TABLE pgbench_history ALTER COLUMN aid TYPE bigint"),
    "update": ("ALTER TABLE pgbench_accounts ADD COLUMN abalance_new bigint;"
               " UPDATE pgbench_accounts SET abalance_new = abalance"),
    "loop": None,  # LOOP_SQL, with COMMIT inside a procedure
    "repack": None,
    "tandem": None,
    "tandem_fast": None,
    "tandem_key": None,
    "tandem_keys": None,
}

# The methods that run on the copy with foreign keys (template_with_keys).
WITH_KEYS = ("alter_keys", "tandem_keys")


def template_with_keys(server, scale):
    """bench_template_fk: pgbench --foreign-keys at `scale`, pgbench_history
    with a bigserial primary key; made once, on first use."""
    if server.psql("postgres", "SELECT count(*) FROM pg_database"
                               " WHERE datname = 'bench_template_fk'") == "0":
        server.psql("postgres", "CREATE DATABASE bench_template_fk")
        subprocess.run([f"{server.bin}/pgbench", "-i", "-q", "--foreign-keys", "-s", str(scale),
                        "bench_template_fk"], env=server.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server.psql("bench_template_fk",
                    "ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY")
        server.psql("bench_template_fk", "VACUUM ANALYZE")
    return "bench_template_fk"

LOOP_SETUP = """
ALTER TABLE pgbench_accounts ADD COLUMN abalance_new bigint;
CREATE PROCEDURE bench_loop() LANGUAGE plpgsql AS $$
DECLARE
  last int := 0;
  upto int;
BEGIN
  LOOP
    SELECT max(aid) INTO upto FROM
      (SELECT aid FROM pgbench_accounts WHERE aid > last ORDER BY aid LIMIT 1000) s;
    EXIT WHEN upto IS NULL;
    UPDATE pgbench_accounts SET abalance_new = abalance WHERE aid > last AND aid <= upto;
    last := upto;
    COMMIT;
  END LOOP;
END $$;
"""


def measure(server, template, method, tandemd, workdir, rate=None):
    kind, _, variant = method.partition(":")
    db = "m_" + "".join(c if c.isalnum() else "_" for c in method)
    if len(db) > 32:  # the migration is named after it, and names are short
        db = db[:23] + "_" + hashlib.sha1(method.encode()).hexdigest()[:8]
    server.psql("postgres", f"DROP DATABASE IF EXISTS {db}")
    server.psql("postgres", f"CREATE DATABASE {db} TEMPLATE {template}")
    rows = int(server.psql(db, "SELECT count(*) FROM pgbench_accounts"))
    if method == "loop":
        server.psql(db, LOOP_SETUP)
    if method == "repack":
        server.psql(db, "CREATE EXTENSION pg_repack")
    # The copy's pages (written through the WAL and the buffer pool) go to
    # disk now, not while the method runs.
    server.psql(db, "CHECKPOINT")
    load = Load(server, db, workdir, rate)
    time.sleep(WARMUP)
    wal0 = wal_counters(server, db)
    locks = LockWatch(server, db)
    kernel = KernelDirty()
    t0 = time.time()
    rss = None
    backfill_rate = None
    steps = []
    if kind == "none":
        time.sleep(BASELINE_SECONDS)
    elif method in ("alter", "alter_key", "alter_keys", "update"):
        server.psql(db, METHODS[method])
    elif method == "loop":
        server.psql(db, "CALL bench_loop()")
    elif method == "repack":
        subprocess.run([f"{server.bin}/pg_repack", "-d", db, "-t", "pgbench_accounts",
                        "--no-superuser-check"], env=server.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        # tandem_fast, or tandem:key=value+key=value (a variant of the defaults)
        settings = dict(FAST_SETTINGS) if kind == "tandem_fast" else {}
        for pair in filter(None, variant.split("+")):
            key, _, value = pair.partition("=")
            settings[key] = value
        columns = {"tandem_key": [("pgbench_accounts", "aid")],
                   "tandem_keys": [("pgbench_accounts", "aid"), ("pgbench_history", "aid")]}.get(
                       kind, [("pgbench_accounts", "abalance")])
        _, rss, backfill_rate, steps = run_tandem(server, db, tandemd, workdir, settings, rows,
                                                  columns=columns)
    t1 = time.time()
    longest_lock = locks.stop()
    wal = wal_between(wal0, wal_counters(server, db))
    time.sleep(TAIL)
    kernel.stop()
    load.stop()
    txs = load.transactions()
    seconds = t1 - t0
    series = {}
    for (t, lat) in txs:
        second = int(t - t0)
        series.setdefault(second, []).append(lat)
    result = {
        "method": method,
        "rows": rows,
        "rows_per_second": None if kind == "none" else round(rows / seconds),
        "backfill_rows_per_second": round(backfill_rate) if backfill_rate else None,
        **clients_between(txs, t0, t1),
        # tandem: the clients while its backfill step ran, without the
        # phases around it (the verification's scan among them).
        "during_backfill": next((clients_between(txs, s, e) for (i, s, e) in steps
                                 if i == "1.backfill" and e > s), None),
        # tandem: when each of its steps ran, in seconds since the method began.
        "steps": [{"id": i, "from": round(s - t0, 3), "to": round(e - t0, 3)}
                  for (i, s, e) in steps],
        "longest_lock_wait_seconds": round(longest_lock, 3),
        "peak_rss_kib": rss,
        # The whole server's WAL while the method ran (the clients' included).
        "wal": wal,
        "per_second": [
            {"t": s, "tps": len(v), "p99_ms": percentile(v, 99),
             "dirty_mb": kernel.peak_mb(t0 + s, t0 + s + 1),
             "written_back_mb": kernel.written_back_mb(t0 + s, t0 + s + 1)}
            for s, v in sorted(series.items())
        ],
        # Over the method's run, and in each of its three slowest seconds
        # for the clients (by p99): how many 50 ms samples found each kind
        # of session waiting on what.
        "waits": waits_in(locks.samples, t0, 0, seconds),
        # The server's own work while the method ran (checkpoints,
        # autovacuum), in seconds since it began.
        "server_events": [{"from": round(s - t0, 3), "to": round(e - t0, 3), "what": w}
                          for (s, e, w) in server_events(server.log)
                          if e >= t0 and s <= t1 + TAIL],
        "slowest_seconds": [
            {"t": s, "p99_ms": percentile(series[s], 99),
             "waits": waits_in(locks.samples, t0, s, s + 1)}
            for s in sorted((s for s in series if 0 <= s <= seconds),
                            key=lambda s: -percentile(series[s], 99))[:3]
        ],
    }
    server.psql("postgres", f"DROP DATABASE {db}")
    return result


def timed(server, db, sql):
    """Seconds the server took for one statement (psql's \\timing: no connection set-up)."""
    r = subprocess.run([f"{server.bin}/psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db],
                       input=f"\\timing on\n{sql};\n", env=server.env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError(f"psql failed: {sql[:200]}\n{r.stderr}")
    times = [line for line in r.stdout.splitlines() if line.startswith("Time: ")]
    return float(times[-1].split()[1]) / 1000.0


def trigger_overhead(server, template, tandemd, workdir, rounds=3, insert_rounds=7):
    """pgbench TPS and a bulk insert, with and without the dual-write trigger.

    The two databases take turns and the medians are compared, so a burst of
    noise on the machine does not decide a ratio. The inserts run after the
    pgbench rounds, each on a vacuumed table after a CHECKPOINT, timed by the
    server: what is measured is the insert, not the write-back of pgbench's
    dirty pages or an autovacuum that its updates set off.
    """
    dbs = {"plain": "t_plain", "trigger": "t_trigger"}
    for kind, db in dbs.items():
        server.psql("postgres", f"DROP DATABASE IF EXISTS {db}")
        server.psql("postgres", f"CREATE DATABASE {db} TEMPLATE {template}")
        if kind == "trigger":
            run_tandem(server, db, tandemd, workdir, {}, until="dual_write")
    samples = {kind: {"tps": [], "insert": []} for kind in dbs}
    seconds = int(BASELINE_SECONDS / 2)
    for _ in range(rounds):
        for kind, db in dbs.items():
            r = subprocess.run([f"{server.bin}/pgbench", "-n", "-c", str(CLIENTS), "-j", "2", "-T",
                                str(seconds), db], env=server.env,
                               capture_output=True, text=True, check=True)
            for line in r.stdout.splitlines():
                if line.startswith("tps = "):
                    samples[kind]["tps"].append(float(line.split()[2]))
    for db in dbs.values():
        server.psql(db, "VACUUM ANALYZE")
    for n in range(insert_rounds):
        for kind, db in dbs.items():
            server.psql(db, "CHECKPOINT")
            first = 100000000 + n * 200000
            took = timed(server, db, "INSERT INTO pgbench_accounts (aid, bid, abalance, filler)"
                                     f" SELECT {first} + g, 1, 0, '' FROM"
                                     " generate_series(1, 200000) g")
            samples[kind]["insert"].append(round(200000 / took))
    out = {}
    for kind, db in dbs.items():
        out[kind] = {"tps": round(statistics.median(samples[kind]["tps"]), 1),
                     "bulk_insert_rows_per_second": round(statistics.median(
                         samples[kind]["insert"])),
                     "samples": samples[kind]}
        server.psql("postgres", f"DROP DATABASE {db}")
    out["tps_ratio"] = round(out["trigger"]["tps"] / out["plain"]["tps"], 3)
    # The median of each round's pair: the two inserts of a round ran seconds
    # apart, so a drift of the machine between rounds cancels out.
    pairs = [t / p for t, p in zip(samples["trigger"]["insert"], samples["plain"]["insert"])]
    out["bulk_insert_ratio"] = round(statistics.median(pairs), 3)
    out["bulk_insert_ratio_range"] = [round(min(pairs), 3), round(max(pairs), 3)]
    return out


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}{unit}"
    return f"{v}{unit}"


def base_name(name):
    return name.rstrip("'")


def baselines(report):
    """Each run's baseline client TPS: the mean of the no-migration runs
    nearest before and after it (the first and last `none` of a pass), so a
    machine whose speed drifts during the bench moves a ratio less. A `none`
    run is compared with the mean of all of them, which shows the drift; with
    no `none` at all, there is no baseline."""
    names = list(report["methods"])
    nones = [i for i, n in enumerate(names) if base_name(n) == "none"]
    out = {}
    for i, name in enumerate(names):
        if i in nones:
            near = nones
        else:
            before = [j for j in nones if j < i]
            after = [j for j in nones if j > i]
            near = before[-1:] + after[:1]
        tps = [report["methods"][names[j]]["client_tps"] for j in near]
        out[name] = sum(tps) / len(tps) if tps else None
    return out


def rate_of(m):
    return m["backfill_rows_per_second"] or m["rows_per_second"]


def loop_rate(report):
    """The loop's rate; its median when it ran more than once."""
    rates = [rate_of(m) for n, m in report["methods"].items() if base_name(n) == "loop"]
    return statistics.median(rates) if rates else None


def spread(values, unit=""):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0], unit)
    med = statistics.median(values)
    if all(isinstance(v, int) for v in values):
        med = round(med)
    return f"{fmt(med, unit)} ({fmt(min(values))}–{fmt(max(values))})"


def in_second(spans, t):
    """The spans ({"from", "to"} in seconds since the method began) that
    overlap second t."""
    return [x for x in spans if x["from"] < t + 1 and x["to"] >= t]


def markdown(report):
    r = report
    lines = [f"# tandem benchmark, scale {r['scale']} ({r['rows']} rows), {r['when']}", "",
             f"Machine: {r['machine']}. Load: pgbench TPC-B, {CLIENTS} clients, on every method"
             + (f", offered at {r['rate']} TPS in all (pgbench --rate; latencies count from each"
                " transaction's scheduled start)." if r.get("rate") else ", as fast as they go.")
             + (" Server settings beyond the bench's own: "
                + ", ".join(f"`{kv}`" for kv in r["server_settings"]) + "."
                if r.get("server_settings") else ""),
             "", "| method | rows/s | vs loop | client TPS vs none | p50 ms | p99 ms | max ms |"
             " longest lock wait s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    bases = baselines(r)
    loop = loop_rate(r)
    groups = {}
    for name, m in r["methods"].items():
        rate = rate_of(m)
        vs_loop = rate / loop if rate and loop else None
        tps = m["client_tps"] / bases[name] if bases[name] else None
        rss = m["peak_rss_kib"] / 1024.0 if m["peak_rss_kib"] else None
        lat = m["latency_ms"]
        groups.setdefault(base_name(name), []).append((rate, vs_loop, tps, lat["p99"], lat["max"],
                                                       m["longest_lock_wait_seconds"]))
        lines.append(f"| {name} | {fmt(rate)} | {fmt(vs_loop, 'x')} | {fmt(tps, 'x')} |"
                     f" {fmt(lat['p50'])} | {fmt(lat['p99'])} | {fmt(lat['max'])} |"
                     f" {fmt(m['longest_lock_wait_seconds'])} | {fmt(rss)} |")
    if any(len(g) > 1 for g in groups.values()):
        lines += ["", "Each method over its runs: median (lowest–highest); the loop's median"
                  " rate is the one compared against.", "",
                  "| method | runs | rows/s | vs loop | client TPS vs none | p99 ms | max ms |"
                  " longest lock wait s |", "|---|---|---|---|---|---|---|---|"]
        for name, g in groups.items():
            col = list(zip(*g))
            lines.append(f"| {name} | {len(g)} | {spread(col[0])} | {spread(col[1], 'x')} |"
                         f" {spread(col[2], 'x')} | {spread(col[3])} | {spread(col[4])} |"
                         f" {fmt(max(col[5]))} |")
    during = [(n, m) for n, m in r["methods"].items() if m.get("during_backfill")]
    if during:
        lines += ["", "tandem while its backfill step ran, without the phases around it (the"
                  " table above counts its whole run, the verification's scan included):", "",
                  "| method | backfill s | client TPS vs none | p50 ms | p99 ms | max ms |",
                  "|---|---|---|---|---|---|"]
        runs = {}
        for name, m in during:
            d = m["during_backfill"]
            tps = d["client_tps"] / bases[name] if bases[name] else None
            lat = d["latency_ms"]
            runs.setdefault(base_name(name), []).append((d["seconds"], tps, lat["p50"],
                                                         lat["p99"], lat["max"]))
            lines.append(f"| {name} | {fmt(d['seconds'])} | {fmt(tps, 'x')} | {fmt(lat['p50'])} |"
                         f" {fmt(lat['p99'])} | {fmt(lat['max'])} |")
        for name, g in runs.items():
            if len(g) > 1:
                col = list(zip(*g))
                lines.append(f"| {name}: median of {len(g)} | {spread(col[0])} |"
                             f" {spread(col[1], 'x')} | {spread(col[2])} | {spread(col[3])} |"
                             f" {spread(col[4])} |")
    lines += ["", "Where the time went: in each method's three slowest seconds for the"
              " clients (by p99), the waits seen in 50 ms samples of pg_stat_activity"
              " (sessions x samples; `client` is pgbench, `CPU` no wait event), and over"
              " its whole run the clients' share of each.", ""]
    for name, m in r["methods"].items():
        if "waits" not in m:
            continue
        clients = {k[len("client="):]: n for k, n in m["waits"].items()
                   if k.startswith("client=")}
        total = sum(clients.values()) or 1
        share = ", ".join(f"{k} {100.0 * n / total:.0f}%" for k, n in
                          sorted(clients.items(), key=lambda kv: -kv[1])[:4])
        lines.append(f"- **{name}** (clients: {share})")
        for sec in m["slowest_seconds"]:
            top = ", ".join(f"{k} {n}" for k, n in
                            sorted(sec["waits"].items(), key=lambda kv: -kv[1])[:6])
            during = [s["id"] for s in in_second(m.get("steps", []), sec["t"])]
            server = [e["what"] for e in in_second(m.get("server_events", []), sec["t"])]
            back = next((p.get("written_back_mb") or 0 for p in m["per_second"]
                         if p["t"] == sec["t"]), 0)
            lines.append(f"  - second {sec['t']}, p99 {fmt(sec['p99_ms'])} ms"
                         + (f" (steps {', '.join(during)})" if during else "")
                         + (f" (server: {'; '.join(server)})" if server else "")
                         + (f" (kernel wrote back {back} MB)" if back >= KERNEL_BURST_MB else "")
                         + f": {top or '-'}")
    walled = [(n, m) for n, m in r["methods"].items() if m.get("wal")]
    if walled:
        lines += ["", "WAL while each method ran (the whole server's, the clients' included),"
                  " and the kernel's write-back of the data files the server wrote: its"
                  f" largest in one second, and the seconds it wrote back >= {KERNEL_BURST_MB} MB.",
                  "", "| method | WAL MB | full-page images | WAL buffers full | new WAL files |"
                  " largest write-back MB/s | seconds of write-back bursts |",
                  "|---|---|---|---|---|---|---|"]
        for name, m in walled:
            w = m["wal"]
            backs = [(p["t"], p.get("written_back_mb") or 0) for p in m["per_second"]]
            bursts = ", ".join(str(t) for (t, b) in backs if b >= KERNEL_BURST_MB)
            lines.append(f"| {name} | {w['mb']} | {w['full_page_images']} | {w['buffers_full']} |"
                         f" {w['new_segment_files']} | {max((b for _, b in backs), default=0)} |"
                         f" {bursts or '-'} |")
    t = r.get("trigger")
    if t:
        lines += ["", "Dual-write trigger installed (tandem after `dual_write`) versus not:",
                  f"pgbench TPS {t['trigger']['tps']:.0f} vs {t['plain']['tps']:.0f}"
                  f" ({t['tps_ratio']:.2f}x); bulk insert of 200k rows"
                  f" {t['trigger']['bulk_insert_rows_per_second']} vs"
                  f" {t['plain']['bulk_insert_rows_per_second']} rows/s"
                  f" ({t['bulk_insert_ratio']:.2f}x"]
        rng = t.get("bulk_insert_ratio_range")
        lines[-1] += (f", the median of {len(t['trigger']['samples']['insert'])} rounds' ratios,"
                      f" which ranged {rng[0]:.2f}x–{rng[1]:.2f}x)." if rng else ").")
    lines += ["", "rows/s for tandem is its backfill step's rate; for the others, rows over the"
              " method's whole run. `repack` rewrites the table without changing the type."]
    return "\n".join(lines) + "\n"


def plot(report, stem):
    if not shutil.which("gnuplot"):
        return None
    data = stem + ".dat"
    with open(data, "w") as f:
        for name, m in report["methods"].items():
            f.write(f'"{name}"\n')
            for p in m["per_second"]:
                f.write(f"{p['t']} {p['tps']} {p['p99_ms'] or 0}\n")
            f.write("\n\n")
    png = stem + ".png"
    n = len(report["methods"])
    script = (f"set terminal png size 1200,800 noenhanced\nset output '{png}'\nset multiplot layout 2,1\n"
              "set xlabel 'seconds since the method started'\nset ylabel 'client TPS'\n"
              "set key outside right\n"
              f"plot for [i=0:{n - 1}] '{data}' index i using 1:2 with lines title columnheader(1)\n"
              "set ylabel 'client p99 latency (ms)'\nset logscale y\n"
              f"plot for [i=0:{n - 1}] '{data}' index i using 1:($3>0?$3:1/0) with lines"
              " title columnheader(1)\nunset multiplot\n")
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.remove(data)
    return png


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=50)
    ap.add_argument("--tandemd", default=os.path.join(ROOT, "build", "tandemd"))
    ap.add_argument("--methods", default="none,alter,update,loop,repack,tandem,tandem_fast,none",
                    help="comma-separated; tandem:KEY=VALUE+KEY=VALUE runs tandem with those"
                         " settings; a method named twice is measured twice")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the whole method list this many times, one pass after another;"
                         " the report adds each method's median and range over its runs")
    ap.add_argument("--rate", type=int, default=None,
                    help="offer the load at this many TPS in all (pgbench --rate) instead of as"
                         " fast as the clients go: an application that leaves the server room")
    ap.add_argument("--server-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a PostgreSQL setting for the bench's server (repeatable), e.g."
                         " min_wal_size=4GB; the report names them")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    for kv in args.server_setting:
        if not re.fullmatch(r"[a-z_.]+=[^\s'\"]+", kv):
            ap.error(f"--server-setting {kv!r}: expected NAME=VALUE, e.g. min_wal_size=4GB")
    server = Server(args.server_setting)
    workdir = tempfile.mkdtemp(prefix="tandem-bench-work-")
    os.chmod(workdir, 0o755)
    try:
        pgbench_template(server, args.scale)
        report = {"scale": args.scale, "when": datetime.datetime.now().isoformat(timespec="seconds"),
                  "machine": f"{os.cpu_count()} cores", "rate": args.rate,
                  "server_settings": args.server_setting, "methods": {}}
        for method in args.methods.split(",") * max(1, args.repeat):
            print(f"== {method}", flush=True)
            template = (template_with_keys(server, args.scale)
                        if method.partition(":")[0] in WITH_KEYS else "bench_template")
            m = measure(server, template, method, args.tandemd, workdir, args.rate)
            name = method
            while name in report["methods"]:
                name += "'"  # none, then none' at the end (and none'' on a second pass)
            report["methods"][name] = m
            report["rows"] = m["rows"]
            print(f"   {m['seconds']} s, {m['client_tps']} client TPS,"
                  f" p99 {m['latency_ms']['p99']} ms, longest lock wait"
                  f" {m['longest_lock_wait_seconds']} s", flush=True)
        print("== dual-write trigger overhead", flush=True)
        report["trigger"] = trigger_overhead(server, "bench_template", args.tandemd, workdir)
        os.makedirs(args.out, exist_ok=True)
        stamp = (datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-s{args.scale}"
                 + (f"-r{args.rate}" if args.rate else ""))
        stem = os.path.join(args.out, stamp)
        with open(stem + ".json", "w") as f:
            json.dump(report, f, indent=1)
        md = markdown(report)
        png = plot(report, stem)
        if png:
            md += f"\n![throughput and p99 latency per second]({os.path.basename(png)})\n"
        with open(stem + ".md", "w") as f:
            f.write(md)
        # latest.* is the last run under the full load; a paced run has its own.
        latest = "latest-paced" if args.rate else "latest"
        for ext in (".json", ".md"):
            shutil.copyfile(stem + ext, os.path.join(args.out, latest + ext))
        if png:
            shutil.copyfile(png, os.path.join(args.out, latest + ".png"))
            with open(os.path.join(args.out, latest + ".md"), "w") as f:
                f.write(md.replace(os.path.basename(png), latest + ".png"))
        print(md)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
