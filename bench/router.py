#!/usr/bin/env python3
"""What tandem.route() costs an application that calls it in every transaction.

pgbench_accounts (scale --scale) is copied to accounts_v2 by a copy_table in
slices routed by aid (a pilot of 1,000 accounts, the even accounts, the
rest), run to its cutover gate: routes open, the pilot live, both sync
triggers in place. On that one database, pgbench runs each script for
--seconds with --clients clients (prepared statements), one after the other,
--repeat times:

- select / select_routed: one account read in a transaction, without and
  with `SELECT tandem.route(...)` first;
- tpcb / tpcb_routed: pgbench's TPC-B transaction, without and with the
  route call first;
- select_one / select_one_routed: the read as one statement, without and
  with the route in it (a UNION ALL of both sides, each under its answer);
- noop / route: `SELECT :aid` and the call alone (calls per second).

The difference between a script and its routed twin is the router's cost:
added latency (mean and p99 of the per-transaction latencies pgbench logs)
and throughput lost. Writes go to the old table in both, so the sync
triggers cost the same on either side of the comparison.
"""
import argparse
import datetime
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import ROOT, Server, pgbench_template  # noqa: E402

SPEC = """name: router_bench
settings: {batch_size: 20000, backfill_workers: 2}
operations:
  - copy_table:
      table: pgbench_accounts
      to: accounts_v2
      key: [aid]
      create: aid int PRIMARY KEY, bid int, abalance int, filler character(84)
      up: {bid: bid, abalance: abalance, filler: filler}
      down: {bid: bid, abalance: abalance, filler: filler}
      slices:
        by: aid
        list:
          - {name: pilot, where: "aid <= 1000"}
          - {name: even, where: "aid % 2 = 0"}
          - {name: rest}
"""

ROUTE = "SELECT tandem.route('router_bench', :aid::text);\n"
SET_AID = "\\set aid random(1, 100000 * :scale)\n"
SELECT = "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
TPCB = """\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
{route}UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
  VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
"""

# One statement that reads whichever side the route names.
SELECT_EITHER = ("SELECT abalance FROM pgbench_accounts WHERE aid = :aid"
                 " AND tandem.route('router_bench', :aid::text) = 'old'\n"
                 "UNION ALL SELECT abalance FROM accounts_v2 WHERE aid = :aid"
                 " AND tandem.route('router_bench', :aid::text) = 'new';\n")

SCRIPTS = {
    "noop": SET_AID + "SELECT :aid;\n",
    "route": SET_AID + ROUTE,
    "select": SET_AID + "BEGIN;\n" + SELECT + "END;\n",
    "select_routed": SET_AID + "BEGIN;\n" + ROUTE + SELECT + "END;\n",
    "select_one": SET_AID + SELECT,
    "select_one_routed": SET_AID + SELECT_EITHER,
    "tpcb": SET_AID + "BEGIN;\n" + TPCB.format(route="") + "END;\n",
    "tpcb_routed": SET_AID + "BEGIN;\n" + TPCB.format(route=ROUTE) + "END;\n",
}
PAIRS = [("noop", "route"), ("select", "select_routed"), ("select_one", "select_one_routed"),
         ("tpcb", "tpcb_routed")]


def run_script(args, server, db, workdir, name, i):
    path = os.path.join(workdir, f"{name}.sql")
    with open(path, "w") as f:
        f.write(SCRIPTS[name])
    prefix = os.path.join(workdir, f"log_{name}_{i}")
    for old in glob.glob(prefix + "*"):
        os.remove(old)
    r = subprocess.run([f"{server.bin}/pgbench", "-n", "-M", "prepared", "-c",
                        str(args.clients), "-j", str(min(args.clients, 2)), "-T",
                        str(args.seconds), "-s", str(args.scale), "-f", path, "-l",
                        "--log-prefix", prefix, db],
                       env=server.env, capture_output=True, text=True, cwd=workdir)
    if r.returncode != 0:
        raise RuntimeError(f"pgbench {name} failed:\n{r.stderr[-2000:]}")
    latencies = []
    failed = 0
    for log in glob.glob(prefix + "*"):
        with open(log) as f:
            for line in f:
                parts = line.split()
                # client, transaction, latency (us), script, epoch, us
                if parts[2] == "failed":
                    failed += 1
                else:
                    latencies.append(int(parts[2]) / 1000.0)
    latencies.sort()
    tx = len(latencies)
    return {"transactions": tx, "failed": failed, "tps": tx / args.seconds,
            "mean_ms": statistics.mean(latencies),
            "p50_ms": latencies[tx // 2], "p99_ms": latencies[min(tx - 1, int(tx * 0.99))]}


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def markdown(report):
    lines = [f"# tandem.route() cost, scale {report['scale']} ({report['when']})", "",
             f"Machine: {report['machine']}. pgbench, {report['clients']} clients, prepared,"
             f" {report['seconds']} s per run, median of {report['repeat']} runs; routes open,"
             " the pilot slice live, both sync triggers in place.", "",
             "| script | tps | mean ms | p50 ms | p99 ms | failed |", "|---|---|---|---|---|---|"]
    for name, m in report["scripts"].items():
        lines.append(f"| {name} | {m['tps']:,.0f} | {m['mean_ms']:.3f} | {m['p50_ms']:.3f} |"
                     f" {m['p99_ms']:.3f} | {m['failed']} |")
    lines += ["", "| pair | added mean ms | added p99 ms | throughput |", "|---|---|---|---|"]
    for plain, routed in PAIRS:
        a, b = report["scripts"][plain], report["scripts"][routed]
        lines.append(f"| {routed} vs {plain} | {b['mean_ms'] - a['mean_ms']:+.3f} |"
                     f" {b['p99_ms'] - a['p99_ms']:+.3f} | {b['tps'] / a['tps']:.2f}x |")
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tandemd", default=os.path.join(ROOT, "build", "tandemd"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    server = Server()
    workdir = tempfile.mkdtemp(prefix="tandem-bench-router-")
    os.chmod(workdir, 0o777)
    try:
        pgbench_template(server, args.scale, "router")
        spec = os.path.join(workdir, "spec.yaml")
        with open(spec, "w") as f:
            f.write(SPEC)
        print("== tandemd run (to the cutover gate)", flush=True)
        r = subprocess.run([args.tandemd, "run", spec, "--dsn", server.dsn("router")],
                           capture_output=True, text=True)
        if r.returncode != 3:
            raise SystemExit(f"tandemd run did not stop at the cutover gate ({r.returncode}):\n"
                             f"{r.stderr[-2000:]}")
        for _ in range(2):
            r = subprocess.run([args.tandemd, "slices", spec, "promote", "pilot", "--dsn",
                                server.dsn("router")], capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"promote failed:\n{r.stderr[-2000:]}")
        server.psql("router", "VACUUM ANALYZE")
        runs = {name: [] for name in SCRIPTS}
        for i in range(args.repeat):
            for name in SCRIPTS:
                runs[name].append(run_script(args, server, "router", workdir, name, i))
                m = runs[name][-1]
                print(f"   {name} run {i + 1}: {m['tps']:,.0f} tps, mean {m['mean_ms']:.3f} ms,"
                      f" p99 {m['p99_ms']:.3f} ms, failed {m['failed']}", flush=True)
        report = {
            "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "machine": f"{os.cpu_count()} cores",
            "scale": args.scale, "clients": args.clients, "seconds": args.seconds,
            "repeat": args.repeat,
            "scripts": {name: {k: median_of(v, k) for k in v[0]} for name, v in runs.items()},
        }
        os.makedirs(args.out, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        for base in (f"{stamp}-router-s{args.scale}", "router-latest"):
            with open(os.path.join(args.out, base + ".json"), "w") as f:
                json.dump(report, f, indent=2)
            with open(os.path.join(args.out, base + ".md"), "w") as f:
                f.write(markdown(report))
        print(markdown(report))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
