"""Scaling out on Celery: throughput of queued fits on 1 and 2 workers, and the latency from a
trigger to the run's start through Celery and Redis, against the thread executor.

Each phase runs real processes on a fresh PostgreSQL database: `mlops serve` (which never
trains under celery) and `mlops worker --concurrency 1` processes, each with its own data dir;
artifacts go to the database (MLOPS_ARTIFACT_STORE=db). Prints:
  - throughput: FITS queued random-forest fits (~1 s each) on 1 worker, then on 2 workers;
  - trigger -> start: created_at -> started_at of SAMPLES runs triggered one at a time on an
    idle system, p50 and p99, through celery+redis and through the thread executor.
Targets: celery p50 <= 25 ms, p99 <= 100 ms. Needs PostgreSQL (MLOPS_BENCH_PG_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres) and Redis (MLOPS_BENCH_BROKER_URL,
default redis://127.0.0.1:6379/0). Run from the repository root: `.venv/bin/python
bench/scale.py [--fits 20] [--samples 50]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make `tests` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.server import Server
from tests.workers import Worker

PG_URL = os.environ.get(
    "MLOPS_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BROKER = os.environ.get("MLOPS_BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
FINAL = {"completed", "failed", "rejected", "awaiting_approval", "cancelled", "skipped"}
# About a second of fitting on one core of the reference VM.
FOREST = {
    "estimator": "sklearn.ensemble.RandomForestClassifier",
    "params": {"n_estimators": 120, "n_jobs": 1, "random_state": 0},
}


def spec(name: str, queue: str, model: dict[str, Any] | None = None) -> dict[str, Any]:
    source = {"kind": "sklearn", "dataset": "digits" if model else "iris"}
    return {
        "name": name,
        "source": source,
        "target": "target",
        "model": model or {"estimator": "sklearn.tree.DecisionTreeClassifier"},
        "validation": {"min_rows": 10},
        "evaluation": {"metric": "accuracy", "min_score": 0.1},
        "queue": queue,
    }


@contextmanager
def database() -> Iterator[str]:
    name = f"mlops_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def wait_final(api: httpx.Client, run_id: int, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (run := api.get(f"/runs/{run_id}").json())["status"] not in FINAL:
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not end: {run}")
        time.sleep(0.05)
    return run


def start_latency(server: Server, queue: str, samples: int) -> list[float]:
    """created_at -> started_at, in ms, of runs triggered one at a time on an idle system."""
    found: list[float] = []
    with server.api() as api:
        api.post("/pipelines", json=spec("latency", queue))
        wait_final(api, api.post("/pipelines/latency/runs").json()["id"])  # warm-up
        for _ in range(samples):
            run = wait_final(api, api.post("/pipelines/latency/runs").json()["id"])
            found.append((ts(run["started_at"]) - ts(run["created_at"])).total_seconds() * 1e3)
            time.sleep(0.05)
    return found


def throughput(server: Server, queue: str, fits: int, prefix: str) -> tuple[float, float]:
    """Fits per second for `fits` runs triggered at once, and the median train step in s."""
    with server.api() as api:
        names = [f"{prefix}-{i}" for i in range(fits)]
        for name in names:
            api.post("/pipelines", json=spec(name, queue, FOREST))
        ids = [api.post(f"/pipelines/{name}/runs").json()["id"] for name in names]
        runs = [wait_final(api, run_id) for run_id in ids]
    first = min(ts(run["created_at"]) for run in runs)
    last = max(ts(run["finished_at"]) for run in runs)
    trains = [
        (ts(step["finished_at"]) - ts(step["started_at"])).total_seconds()
        for run in runs
        for step in run["steps"]
        if step["name"] == "train" and step["finished_at"]
    ]
    return fits / (last - first).total_seconds(), statistics.median(trains)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def celery_phase(root: Path, fits: int, samples: int) -> dict[str, Any]:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    with database() as url:
        server = Server(
            root / "api", database_url=url, MLOPS_EXECUTOR="celery", MLOPS_BROKER_URL=BROKER
        )
        (root / "api").mkdir()
        workers = [
            Worker(root / f"w{i}", database_url=url, broker_url=BROKER, name=f"w{i}", queues=queue)
            for i in (1, 2)
        ]
        try:
            server.start()
            workers[0].start()
            latency = start_latency(server, queue, samples)
            one = throughput(server, queue, fits, "one")
            workers[1].start()
            two = throughput(server, queue, fits, "two")
        finally:
            for worker in workers:
                worker.kill()
            server.kill()
    return {"latency": latency, "one": one, "two": two}


def thread_phase(root: Path, samples: int) -> list[float]:
    with database() as url:
        (root / "thread").mkdir()
        server = Server(root / "thread", database_url=url)
        try:
            server.start()
            return start_latency(server, "default", samples)
        finally:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=20)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlops-scale-") as tmp:
        root = Path(tmp)
        threads = thread_phase(root, args.samples)
        celery = celery_phase(root, args.fits, args.samples)
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; broker {BROKER}")
    (rate1, fit1), (rate2, fit2) = celery["one"], celery["two"]
    print(f"throughput, {args.fits} queued fits (median train step {fit1:.2f} s / {fit2:.2f} s):")
    print(f"  1 worker : {rate1:.2f} fits/s")
    print(f"  2 workers: {rate2:.2f} fits/s  ({rate2 / rate1:.2f}x)")
    print(f"trigger -> started_at over {args.samples} runs (created_at -> started_at):")
    celery_label = "celery+" + ("rabbitmq" if BROKER.startswith("amqp") else "redis")
    for label, values in ((celery_label, celery["latency"]), ("thread", threads)):
        print(f"  {label:15}: p50 {pct(values, 50):6.1f} ms   p99 {pct(values, 99):6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
