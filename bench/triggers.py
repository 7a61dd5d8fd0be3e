"""How fast and how cheaply the service fires retrains, each figure next to its own baseline.

1. metric breach -> run started: POST an observation that breaches a metric trigger and read
   the fired run's started_at (target p50 <= 20 ms, p99 <= 100 ms on SQLite); baseline: the
   round trips of GET /healthz and GET /api/v1/runs/{id} on the same server at the same time.
2. cron lateness: started_at - scheduled tick of `* * * * *` pipelines while N RandomForest
   trainings run (target p99 <= 1 s with 10); baseline: the same window with no training.
3. webhook ingestion: rows/s of signed 10k-row CSV and JSON batches (target >= 100k rows/s
   for CSV); baseline: pandas parsing the same body in this process.
4. 10,000 pipelines with cron triggers: start-up time, resident memory, idle CPU (targets
   <= 10 s, <= 300 MB, <= 5 % of a core); baseline: the same server with no pipelines.

Every server is `mlops serve` on SQLite in a fresh data dir, a child of this process. Exit
code 0 whatever the figures; 1 if the service fails. Run from the repository root:
`.venv/bin/python bench/triggers.py [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # run as a script: make `bench` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sklearn

from bench.harness import run_in_workdir
from bench.triggers_cron import CronOptions, cron_rows, print_cron
from bench.triggers_cron import measure as measure_cron
from bench.triggers_events import (
    breach_rows,
    breach_spec,
    breaches,
    ingest,
    ingest_rows,
    make_bodies,
    print_breaches,
    print_ingest,
)
from bench.triggers_fleet import build_database, fleet_rows, footprint, print_fleet
from bench.triggers_server import Row, Server


@dataclass(frozen=True)
class Options:
    breaches: int
    poll_ms: float
    batch_rows: int
    posts: int
    cron: CronOptions
    fleet: int
    starts: int
    idle_s: float
    keep: bool
    phases: tuple[str, ...]


PHASES = ("events", "cron", "fleet")


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description="mlops trigger benchmark")
    add = parser.add_argument
    add("--breaches", type=int, default=200, help="metric breaches timed")
    add("--poll-ms", type=float, default=10.0, help="poll interval while a fired run runs")
    add("--batch-rows", type=int, default=10_000, help="rows per webhook batch")
    add("--posts", type=int, default=20, help="webhook posts timed per format")
    add("--cron-pipelines", type=int, default=10, help="pipelines ticking every minute")
    add("--trainings", type=int, default=10, help="trainings running in the loaded window")
    add("--ticks", type=int, default=3, help="minute ticks per window (baseline, loaded)")
    add("--train-seconds", type=float, default=5.0, help="one training's fit alone")
    add("--fleet", type=int, default=10_000, help="pipelines for start-up/memory/idle CPU")
    add("--starts", type=int, default=3, help="server starts timed per database")
    add("--idle-s", type=float, default=20.0, help="idle CPU window")
    add("--only", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    add("--keep", action="store_true", help="keep the temp dir (server logs, databases)")
    add("--quick", action="store_true", help="smoke run: small counts, 5 s interval ticks")
    a = parser.parse_args(argv)
    phases = tuple(p for p in PHASES if p in a.only.split(","))
    if a.quick:
        cron = CronOptions(3, 3, 2, every_s=5.0, train_seconds=1.0)
        return Options(10, a.poll_ms, a.batch_rows, 3, cron, 1_000, 1, 5.0, a.keep, phases)
    cron = CronOptions(a.cron_pipelines, a.trainings, a.ticks, None, a.train_seconds)
    return Options(
        a.breaches,
        a.poll_ms,
        a.batch_rows,
        a.posts,
        cron,
        a.fleet,
        a.starts,
        a.idle_s,
        a.keep,
        phases,
    )


# --- the phases -------------------------------------------------------------------------


def events(opts: Options, workdir: Path) -> list[Row]:
    """Metric breaches and webhook batches, on one server."""
    server = Server(workdir)
    try:
        server.start()
        server.create_pipeline(breach_spec())
        print(f"metric breach -> start: {opts.breaches} breaches ...", flush=True)
        found = breaches(server, opts.breaches, opts.poll_ms / 1000)
        print(f"webhook ingestion: {opts.posts} posts per format ...", flush=True)
        bodies = make_bodies(workdir / "data", opts.batch_rows)
        results = [
            ingest(server, "csv", bodies.csv, bodies.rows, opts.posts),
            ingest(server, "json", bodies.json, bodies.rows, opts.posts),
        ]
    finally:
        server.stop()
    print_breaches(found, opts.poll_ms / 1000)
    print_ingest(results)
    return breach_rows(found) + ingest_rows(results)


def cron(opts: Options, workdir: Path) -> list[Row]:
    server = Server(workdir, workers=str(opts.cron.workers), shutdown_grace_s="1")
    try:
        result = measure_cron(server, opts.cron, workdir / "data")
    finally:
        server.stop()
    print_cron(result)
    return cron_rows(result)


def fleet(opts: Options, workdir: Path) -> list[Row]:
    print(f"{opts.fleet:,} pipelines: writing the database ...", flush=True)
    build_database(workdir / "empty", 0)
    built_s = build_database(workdir / "fleet", opts.fleet)
    print(f"  written in {built_s:.1f} s; timing start-ups and idling ...", flush=True)
    empty = footprint(workdir / "empty", 0, opts.starts, opts.idle_s)
    many = footprint(workdir / "fleet", opts.fleet, opts.starts, opts.idle_s)
    print_fleet(empty, many, built_s, opts.idle_s)
    return fleet_rows(empty, many)


# --- the report -------------------------------------------------------------------------


def print_header(load_before: float, began: float) -> None:
    print("\n=== mlops trigger benchmark ===")
    print(
        f"machine: {os.cpu_count()} cores, shared and noisy (load average {load_before:.2f} at"
        f" start, {os.getloadavg()[0]:.2f} at end); {platform.system()} {platform.machine()},"
        f" Python {platform.python_version()}, scikit-learn {sklearn.__version__};"
        f" {time.monotonic() - began:.0f} s in all"
    )
    print("service: mlops serve, SQLite (WAL), thread executor, auth off, fresh data dir each")


def print_summary(rows: list[Row]) -> None:
    print("\n-- summary --")
    print(f"  {'figure':<44}{'value':>16}  {'baseline (same run)':<36}{'target':<18}result")
    for row in rows:
        print(
            f"  {row.figure:<44}{row.shown():>16}  {row.baseline:<36}{row.target():<18}"
            f"{row.verdict()}"
        )


def run(opts: Options, workdir: Path) -> None:
    load_before, began = os.getloadavg()[0], time.monotonic()
    phases = {"events": events, "cron": cron, "fleet": fleet}
    rows: list[Row] = []
    for name in opts.phases:
        rows += phases[name](opts, workdir / name)
    print_header(load_before, began)
    print_summary(rows)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    return run_in_workdir(
        lambda workdir: run(opts, workdir),
        prefix="mlops-bench-triggers-",
        keep=opts.keep,
        logs="server.log in each phase's directory",
    )


if __name__ == "__main__":
    raise SystemExit(main())
