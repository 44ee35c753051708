#!/usr/bin/env python3
"""A fleet of small databases on one cluster: how long `tandemd fleet run`
takes against `parallel`, and what the runner costs (memory, sessions).

--databases databases (default 100) are cloned from one template: pgbench
at scale 1 cut to --rows accounts (default 10,000). The fleet runs the
pgbench example (abalance to bigint) through cleanup: a canary wave of one,
then the rest with `parallel` P (per_daemon and per_host P too), for each P
of --parallel (default 1,4,16). Every run starts from fresh clones.

The plain alternative, measured in the same run on the same clones: the
loop people write, `tandemd run` on each database one after another, and
the same loop four at a time (xargs -P 4).

While a run goes, every 0.2 s: the runner's resident memory (its peak is
VmHWM at the end) and threads, and the sessions it has open on the server
(pg_stat_activity rows whose application_name starts with "tandem").
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import ROOT, Server  # noqa: E402

TANDEMD = os.environ.get("TANDEMD", os.path.join(ROOT, "build", "tandemd"))
SPEC = os.path.join(ROOT, "migrations", "examples", "pgbench_abalance_bigint.yaml")


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


class Watch:
    """Samples a process and the server's tandem sessions until stopped."""

    def __init__(self, server, pid):
        self.server, self.pid = server, pid
        self.rss_kb = self.hwm_kb = self.threads = self.sessions = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            s = proc_status(self.pid)
            if s:
                self.rss_kb = max(self.rss_kb, int(s.get("VmRSS", "0 kB").split()[0]))
                self.hwm_kb = max(self.hwm_kb, int(s.get("VmHWM", "0 kB").split()[0]))
                self.threads = max(self.threads, int(s.get("Threads", "0")))
            try:
                n = int(self.server.psql("postgres", "SELECT count(*) FROM pg_stat_activity"
                                                     " WHERE application_name LIKE 'tandem%'"))
                self.sessions = max(self.sessions, n)
            except RuntimeError:
                pass
            time.sleep(0.2)

    def finish(self):
        self.stop.set()
        self.thread.join()


def fresh_databases(server, n):
    names = [f"shard{i:03d}" for i in range(n)]
    for db in names + ["control"]:
        server.psql("postgres", f"DROP DATABASE IF EXISTS {db}")
    for db in names:
        server.psql("postgres", f"CREATE DATABASE {db} TEMPLATE fleet_template")
    server.psql("postgres", "CREATE DATABASE control")
    server.psql("postgres", "CHECKPOINT")
    return names


def fleet_file(server, names, parallel, workdir):
    lines = [f"name: bench_p{parallel}", f"migration: {SPEC}", "targets:"]
    for i, db in enumerate(names):
        ring = "canary" if i == 0 else "main"
        lines.append(f"  - {{name: {db}, dsn: '{server.dsn(db)}', labels: {{ring: {ring}}}}}")
    lines += ["waves:", "  - {name: canary, select: {ring: canary}}",
              f"  - {{name: main, select: rest, parallel: {parallel}}}",
              f"limits: {{per_daemon: {parallel}, per_host: {parallel}}}", ""]
    path = os.path.join(workdir, f"fleet-p{parallel}.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def timed(cmd, server, env=None):
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env)
    watch = Watch(server, p.pid)
    out, _ = p.communicate()
    watch.finish()
    seconds = time.monotonic() - start
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} exited {p.returncode}:\n{out[-3000:]}")
    return seconds, watch


def check_all(server, names):
    bad = [db for db in names if server.psql(
        db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid ="
            " 'pgbench_accounts'::regclass AND attname = 'abalance'") != "bigint"]
    if bad:
        raise SystemExit(f"not migrated: {bad[:5]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--databases", type=int, default=100)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--parallel", default="1,4,16")
    ap.add_argument("--no-loops", action="store_true", help="skip the plain loops")
    args = ap.parse_args()
    if not os.path.exists(TANDEMD):
        raise SystemExit(f"{TANDEMD} is missing: run scripts/build.sh first")
    server = Server(settings=("max_connections=400", "fsync=on"))
    workdir = tempfile.mkdtemp(prefix="tandem-fleet-bench-")
    results = {"databases": args.databases, "rows": args.rows, "runs": []}
    try:
        server.psql("postgres", "CREATE DATABASE fleet_template")
        subprocess.run([f"{server.bin}/pgbench", "-i", "-q", "-s", "1", "fleet_template"],
                       env=server.env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        server.psql("fleet_template", f"DELETE FROM pgbench_accounts WHERE aid > {args.rows}")
        server.psql("fleet_template", "VACUUM ANALYZE")
        # Interleaved, so that what the server does in the background (its
        # checkpoints, the clones' first reads) falls on both alike.
        plan = []
        for p in [int(x) for x in args.parallel.split(",")]:
            if not args.no_loops and p in (1, 4):
                plan.append(("loop", p))
            plan.append(("fleet", p))
        for how, p in plan:
            names = fresh_databases(server, args.databases)
            if how == "fleet":
                f = fleet_file(server, names, p, workdir)
                print(f"== fleet, parallel {p}", flush=True)
                seconds, w = timed([TANDEMD, "--log-level", "warn", "fleet", "run", f,
                                    "--approve", "cleanup", "--control-dsn",
                                    server.dsn("control")], server)
                check_all(server, names)
                results["runs"].append({"how": f"tandemd fleet run, parallel {p}",
                                        "parallel": p, "seconds": round(seconds, 1),
                                        "peak_rss_mb": round(w.hwm_kb / 1024, 1),
                                        "max_threads": w.threads, "max_sessions": w.sessions})
                print(f"   {seconds:.1f} s, peak RSS {w.hwm_kb / 1024:.1f} MB, {w.threads}"
                      f" threads, {w.sessions} sessions", flush=True)
                continue
            print(f"== loop of tandemd run, {p} at a time", flush=True)
            script = (f"printf '%s\\n' {' '.join(names)} | xargs -P {p} -I DB "
                      f"{TANDEMD} --log-level warn run {SPEC} --approve cleanup "
                      f"--dsn 'host={server.dir} port=5432 user=postgres dbname=DB'")
            seconds, w = timed(["bash", "-c", script], server)
            check_all(server, names)
            results["runs"].append({"how": f"loop of tandemd run (xargs -P {p})",
                                    "parallel": p, "seconds": round(seconds, 1),
                                    "max_sessions": w.sessions})
            print(f"   {seconds:.1f} s, {w.sessions} sessions", flush=True)
    finally:
        server.stop()
    base = next((r["seconds"] for r in results["runs"] if r["how"].startswith("loop")
                 and r["parallel"] == 1), None)
    stamp = datetime.datetime.utcnow().strftime("%Y%m%d-%H%M%S")
    out = os.path.join(ROOT, "bench", "results", f"{stamp}-fleet-{args.databases}")
    md = [f"# Fleet: {args.databases} databases of {args.rows:,} accounts on one cluster",
          "", f"{stamp} UTC, {os.cpu_count()} cores. The pgbench example through cleanup on "
          "every database: a canary, then the rest.", "",
          "| how | parallel | seconds | vs. the sequential loop | peak RSS (MB) | threads |"
          " sessions |", "|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        ratio = f"{base / r['seconds']:.2f}x" if base else "-"
        md.append(f"| {r['how']} | {r['parallel']} | {r['seconds']} | {ratio} |"
                  f" {r.get('peak_rss_mb', '-')} | {r.get('max_threads', '-')} |"
                  f" {r['max_sessions']} |")
    with open(out + ".json", "w") as f:
        json.dump(results, f, indent=2)
    with open(out + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    for ext in (".json", ".md"):
        latest = os.path.join(ROOT, "bench", "results", "fleet-latest" + ext)
        with open(out + ext) as src, open(latest, "w") as dst:
            dst.write(src.read())
    print("\n".join(md))


if __name__ == "__main__":
    main()
