#!/usr/bin/env python3
"""How fast tandem checks a copy, against one plain SQL statement doing the same.

After the backfill of an alter_column_type (pgbench_accounts.abalance to
bigint) and of a copy_table (pgbench_accounts to a new table), each database
is cloned (CREATE DATABASE ... TEMPLATE) so that every measurement starts from
the same pages, none of them read since the backfill wrote them: the first
reader of a freshly written page pays for setting its hint bits and pruning
it, and that cost belongs to whichever check comes first.

On each clone, one of:
- plain: the one statement an engineer would run to check it by hand
  (`count(*) ... WHERE new IS DISTINCT FROM old`, or a FULL JOIN of both
  tables); PostgreSQL runs it with its parallel workers;
- lookup: the check as one statement that looks each row's copy up (how
  tandem checked a copy before it compared key ranges);
- tandem: tandemd's shadow_read phase (its verify steps), read off
  tandem.steps, with backfill_workers 1 and 2.

No load runs meanwhile: these are the checks' own rates. Each measurement is
repeated --repeat times on fresh clones; the report gives the median and the
range, and the ratio of tandem's rate to plain's.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import ROOT, Server, pgbench_template  # noqa: E402

ALTER = """name: check_alter
settings: {{batch_size: 1000, backfill_workers: {workers}}}
operations:
  - alter_column_type:
      table: pgbench_accounts
      column: abalance
      type: bigint
      up: abalance::bigint
      down: abalance::integer
"""

COPY = """name: check_copy
settings: {{batch_size: 1000, backfill_workers: {workers}}}
operations:
  - copy_table:
      table: pgbench_accounts
      to: accounts_v2
      key: [aid]
      create: aid int PRIMARY KEY, bid int, abalance bigint, filler character(84)
      up: {{bid: bid, abalance: abalance, filler: filler}}
"""

CASES = {
    "alter_column_type": {
        "spec": ALTER,
        "plain": "SELECT count(*) FROM pgbench_accounts"
                 " WHERE _tandem_new_abalance IS DISTINCT FROM abalance::bigint",
        "lookup": None,
    },
    "copy_table": {
        "spec": COPY,
        "plain": "SELECT count(*) FROM pgbench_accounts a FULL JOIN accounts_v2 b USING (aid)"
                 " WHERE a.aid IS NULL OR b.aid IS NULL OR ROW(b.bid, b.abalance, b.filler)"
                 " IS DISTINCT FROM ROW(a.bid, a.abalance::bigint, a.filler)",
        "lookup": "SELECT count(*) FROM pgbench_accounts _row WHERE NOT EXISTS (SELECT 1 FROM"
                  " (SELECT _row.bid AS bid, _row.abalance AS abalance, _row.filler AS filler)"
                  " AS _up CROSS JOIN accounts_v2 AS _t WHERE _t.aid = _row.aid AND"
                  " ROW(_t.bid, _t.abalance, _t.filler) IS NOT DISTINCT FROM"
                  " ROW(_up.bid, _up.abalance, _up.filler))",
    },
}


def tandemd(args, server, db, spec_text, workdir, until):
    spec = os.path.join(workdir, f"{db}.yaml")
    with open(spec, "w") as f:
        f.write(spec_text)
    r = subprocess.run([args.tandemd, "run", spec, "--dsn", server.dsn(db), "--until", until],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"tandemd failed ({r.returncode}): {r.stderr[-2000:]}")


def clone(server, template, name):
    server.psql("postgres", f"DROP DATABASE IF EXISTS {name}")
    server.psql("postgres", f"CREATE DATABASE {name} TEMPLATE {template}")
    # The clone's pages come from the template's files; the OS cache holds
    # them as it would hold a table the backfill just wrote.
    return name


def timed(server, db, sql):
    t0 = time.time()
    server.psql(db, sql)
    return time.time() - t0


def verify_seconds(server, db):
    rows = server.psql(db, "SELECT step_id, extract(epoch FROM finished_at - started_at)"
                           " FROM tandem.steps WHERE step_id LIKE '%.verify%' ORDER BY started_at")
    out = {}
    for line in rows.splitlines():
        step, seconds = line.split("|")
        out[step] = float(seconds)
    return out


def summary(values):
    return {"median": statistics.median(values), "low": min(values), "high": max(values),
            "runs": len(values)}


def measure(args, server, workdir, name, case):
    rows = args.scale * 100000
    template = f"t_{name}"
    server.psql("postgres", f"CREATE DATABASE {template} TEMPLATE bench_template")
    tandemd(args, server, template, case["spec"].format(workers=1), workdir, "backfill")
    server.psql(template, "CHECKPOINT")
    result = {"rows": rows, "methods": {}}
    methods = ["plain"] + (["lookup"] if case["lookup"] else []) + ["tandem", "tandem_w2"]
    seconds = {m: [] for m in methods}
    steps = {}
    for i in range(args.repeat):
        for method in methods:
            db = clone(server, template, f"c_{name}_{method}_{i}")
            if method in ("plain", "lookup"):
                seconds[method].append(timed(server, db, case[method]))
            else:
                workers = 2 if method == "tandem_w2" else 1
                tandemd(args, server, db, case["spec"].format(workers=workers), workdir,
                        "shadow_read")
                by_step = verify_seconds(server, db)
                seconds[method].append(sum(by_step.values()))
                for step, s in by_step.items():
                    steps.setdefault(method, {}).setdefault(step, []).append(s)
            server.psql("postgres", f"DROP DATABASE {db}")
            print(f"   {name} {method} run {i + 1}: {seconds[method][-1]:.3f} s", flush=True)
    for method in methods:
        s = summary(seconds[method])
        s["rows_per_second"] = rows / s["median"]
        if method in steps:
            s["steps"] = {k: summary(v) for k, v in steps[method].items()}
        result["methods"][method] = s
    plain = result["methods"]["plain"]["rows_per_second"]
    for m in result["methods"].values():
        m["vs_plain"] = m["rows_per_second"] / plain
    if "lookup" in result["methods"]:
        lookup = result["methods"]["lookup"]["rows_per_second"]
        for m in result["methods"].values():
            m["vs_lookup"] = m["rows_per_second"] / lookup
    return result


DESCRIBE = {
    "plain": "one statement (PostgreSQL's parallel workers)",
    "lookup": "one statement, a lookup per row",
    "tandem": "tandem, backfill_workers 1",
    "tandem_w2": "tandem, backfill_workers 2",
}


def markdown(report):
    lines = [f"# Copy checks, scale {report['scale']} ({report['when']})", "",
             f"Machine: {report['machine']}. No load. Median of {report['repeat']} runs on fresh"
             " clones of the database as the backfill left it (lowest–highest in brackets).", ""]
    for name, r in report["cases"].items():
        lines += [f"## {name}: {r['rows']:,} rows", "",
                  "| check | seconds | rows/s | vs plain | vs lookup |",
                  "|---|---|---|---|---|"]
        for method, m in r["methods"].items():
            vs_lookup = f"{m['vs_lookup']:.1f}x" if "vs_lookup" in m else ""
            lines.append(f"| {DESCRIBE[method]} | {m['median']:.2f} ({m['low']:.2f}–{m['high']:.2f})"
                         f" | {m['rows_per_second']:,.0f} | {m['vs_plain']:.2f}x | {vs_lookup} |")
        for method, m in r["methods"].items():
            for step, s in m.get("steps", {}).items():
                if len(m["steps"]) > 1:
                    lines.append(f"\n{DESCRIBE[method]}: step {step} {s['median']:.2f} s")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tandemd", default=os.path.join(ROOT, "build", "tandemd"))
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    server = Server()
    workdir = tempfile.mkdtemp(prefix="tandem-bench-work-")
    os.chmod(workdir, 0o755)
    try:
        pgbench_template(server, args.scale)
        report = {"scale": args.scale, "repeat": args.repeat, "machine": f"{os.cpu_count()} cores",
                  "when": datetime.datetime.now().isoformat(timespec="seconds"), "cases": {}}
        for name in args.cases.split(","):
            print(f"== {name}", flush=True)
            report["cases"][name] = measure(args, server, workdir, name, CASES[name])
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, datetime.datetime.now().strftime("%Y%m%d-%H%M%S") +
                            f"-copy-checks-s{args.scale}")
        md = markdown(report)
        with open(stem + ".json", "w") as f:
            json.dump(report, f, indent=1)
        with open(stem + ".md", "w") as f:
            f.write(md)
        for ext in (".json", ".md"):
            shutil.copyfile(stem + ext, os.path.join(args.out, "copy-checks-latest" + ext))
        print(md)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
