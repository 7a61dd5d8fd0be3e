"""/metrics scrape time as the run history grows, next to /healthz in the same run.

For each history size: seed a fresh database (bench/seed.py), start `mlops serve` on it, and
time (a) the first scrapes, before the roll-up job has counted anything (the SQL aggregate
over every run), (b) how long the roll-up job takes to count the history, (c) scrapes once it
has, alternating with /healthz on the same keep-alive connection, and (d) in this process,
what the previous release did per scrape: load every finished run and bucket it in Python.

    python bench/metrics.py                      # SQLite, 100k and 1M runs
    python bench/metrics.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make `bench` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import create_engine, select, text

from app.pipelines.models import Pipeline
from app.runs.models import Run
from bench.harness import BenchError
from bench.seed import create_pg_database, drop_pg_database, seed, wait_rolled_up
from bench.triggers_server import Server

TARGET_MS = 20.0
RESULTS = Path(__file__).with_name("results")


def main() -> int:
    parser = argparse.ArgumentParser(description="/metrics scrape time against history size")
    parser.add_argument("--runs", default="100000,1000000", help="history sizes, comma-separated")
    parser.add_argument("--pipelines", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=40, help="timed scrapes per size")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="use PostgreSQL (a fresh database)")
    parser.add_argument("--skip-old", action="store_true", help="skip the load-every-run timing")
    args = parser.parse_args()
    results = []
    for runs in (int(value) for value in args.runs.split(",")):
        results.append(measure(runs, args))
        print_result(results[-1])
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"metrics-{'postgresql' if args.postgres else 'sqlite'}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures kept in {out}")
    return 0


def measure(runs: int, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="mlops-bench-metrics-"))
    url = create_pg_database(args.postgres) if args.postgres else f"sqlite:///{workdir}/bench.db"
    try:
        seeded = seed(url, pipelines_count=args.pipelines, runs=runs, steps=False)
        old_ms = None if args.skip_old else old_scrape_ms(url)
        analyzed_before = analyze_count(url)
        server = Server(workdir, database_url=url)
        server.start()
        try:
            return {
                "database": "postgresql" if args.postgres else "sqlite",
                "runs": runs,
                "pipelines": args.pipelines,
                "seed_s": round(seeded.seconds, 1),
                "load_before": os.getloadavg()[0],
                "old_scrape_ms": old_ms,
                **scrape_figures(server, url, args.scrapes, analyzed_before),
                "load_after": os.getloadavg()[0],
            }
        finally:
            server.stop()
    finally:
        if args.postgres:
            drop_pg_database(args.postgres, url)


def scrape_figures(
    server: Server, url: str, scrapes: int, analyzed_before: int | None
) -> dict[str, Any]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=600) as client:
        # Before the first roll-up tick (10 s after start): every run is aggregated live.
        unrolled = [_timed(client, "/metrics") for _ in range(3)]
        caught_up_s = wait_rolled_up(url)
        # Right after a catch-up on PostgreSQL, the roll-up refreshes the table's statistics
        # (app.runs.rollup): until then the planner may scan every run. Those scrapes are
        # timed apart, then the steady ones once the refresh is done.
        settling = [_timed(client, "/metrics") for _ in range(3)]
        analyzed_s = wait_analyzed(url, analyzed_before)
        healthz, metrics = [], []
        for _ in range(5):
            _timed(client, "/healthz"), _timed(client, "/metrics")  # warm
        for _ in range(scrapes):
            healthz.append(_timed(client, "/healthz"))
            metrics.append(_timed(client, "/metrics"))
        size = len(client.get("/metrics").content)
        # This machine's PostgreSQL runs with autovacuum off; with it on (PostgreSQL's
        # default) the dead index entries the roll-up's updates leave are vacuumed away.
        vacuumed = _vacuumed_scrapes(client, url, scrapes)
    return {
        "unrolled_scrape_ms": round(statistics.median(unrolled), 1),
        "rollup_catch_up_s": round(caught_up_s, 1),
        "scrapes_right_after_catch_up_ms": [round(v, 1) for v in settling],
        "statistics_refreshed_after_s": None if analyzed_s is None else round(analyzed_s, 1),
        "scrape_ms_median": round(statistics.median(metrics), 2),
        "scrape_ms_p90": round(_p90(metrics), 2),
        "healthz_ms_median": round(statistics.median(healthz), 2),
        "exposition_bytes": size,
        **vacuumed,
    }


def _vacuumed_scrapes(client: httpx.Client, url: str, scrapes: int) -> dict[str, Any]:
    """Scrapes after `VACUUM runs`, as autovacuum would run it (PostgreSQL only)."""
    if not url.startswith("postgresql"):
        return {}
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("VACUUM runs"))
    finally:
        engine.dispose()
    metrics = [_timed(client, "/metrics") for _ in range(scrapes)]
    return {
        "vacuumed_scrape_ms_median": round(statistics.median(metrics), 2),
        "vacuumed_scrape_ms_p90": round(_p90(metrics), 2),
    }


ANALYZED = text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'runs'")


def analyze_count(url: str) -> int | None:
    """How many times `runs` has been analyzed on request (None: SQLite)."""
    if not url.startswith("postgresql"):
        return None
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(ANALYZED) or 0)
    finally:
        engine.dispose()


def wait_analyzed(url: str, before: int | None, timeout_s: float = 120) -> float | None:
    """Seconds until `runs` has been analyzed again since `before` (None: SQLite)."""
    if before is None:
        return None
    engine = create_engine(url)
    began = time.perf_counter()
    try:
        while time.perf_counter() - began < timeout_s:
            with engine.connect() as connection:
                if int(connection.scalar(ANALYZED) or 0) > before:
                    return time.perf_counter() - began
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise BenchError(f"the statistics of runs were not refreshed within {timeout_s:g} s")


def _timed(client: httpx.Client, path: str) -> float:
    began = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise BenchError(f"GET {path}: {response.status_code} {response.text[:300]}")
    return elapsed


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def old_scrape_ms(url: str) -> float:
    """What the previous release's scrape did: every finished run loaded and bucketed."""
    engine = create_engine(url)
    began = time.perf_counter()
    with engine.connect() as connection:
        rows = connection.execute(
            select(Pipeline.name, Run.started_at, Run.finished_at)
            .join(Pipeline, Pipeline.id == Run.pipeline_id)
            .where(Run.started_at.is_not(None), Run.finished_at.is_not(None))
        ).all()
    per_pipeline: dict[str, list[float]] = {}
    for name, started, finished in rows:
        per_pipeline.setdefault(name, []).append((finished - started).total_seconds())
    for values in per_pipeline.values():
        [sum(v <= b for v in values) for b in (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)]
    engine.dispose()
    return round((time.perf_counter() - began) * 1000, 1)


def print_result(result: dict[str, Any]) -> None:
    verdict = "pass" if result["scrape_ms_median"] <= TARGET_MS else "MISS"
    print(
        f"\n{result['database']}, {result['runs']:,} runs over {result['pipelines']:,} pipelines "
        f"(seeded in {result['seed_s']} s; load average {result['load_before']:.2f})\n"
        f"  /metrics, rolled up:     median {result['scrape_ms_median']} ms, "
        f"p90 {result['scrape_ms_p90']} ms  (target <= {TARGET_MS:g} ms: {verdict})\n"
        f"  /healthz, same run:      median {result['healthz_ms_median']} ms\n"
        f"  /metrics before roll-up: {result['unrolled_scrape_ms']} ms (aggregate over every run)\n"
        f"  roll-up catch-up:        {result['rollup_catch_up_s']} s\n"
        f"  scrapes right after the catch-up: {result['scrapes_right_after_catch_up_ms']} ms; "
        f"statistics refreshed {result['statistics_refreshed_after_s']} s later\n"
        f"  previous release's scrape work (load every finished run): "
        f"{result['old_scrape_ms']} ms\n"
        f"  exposition: {result['exposition_bytes']:,} bytes"
        + (
            f"\n  /metrics after VACUUM runs (autovacuum is off here): median "
            f"{result['vacuumed_scrape_ms_median']} ms, p90 {result['vacuumed_scrape_ms_p90']} ms"
            if "vacuumed_scrape_ms_median" in result
            else ""
        )
    )


if __name__ == "__main__":
    sys.exit(main())
